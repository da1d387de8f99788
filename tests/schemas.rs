//! Every task schema compiles, its hand-written example validates, and the mock teacher's
//! generated instances validate (so the mock answers schema-valid JSON for every task).

use mediflow::schemas::{validate, Schemas};
use rand::SeedableRng;
use std::path::PathBuf;

#[test]
fn schemas_compile_and_examples_and_mock_instances_validate() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tax = mediflow::taxonomy::load(&repo.join("taxonomy")).unwrap();
    let schemas = Schemas::load(&repo.join("schemas"), &tax).unwrap();
    for t in &tax.tasks {
        let s = schemas
            .get(&t.id)
            .unwrap_or_else(|| panic!("no schema for {}", t.id));
        let ex: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(repo.join(format!("schemas/examples/{}.json", t.id))).unwrap(),
        )
        .unwrap();
        validate(s, &ex).unwrap_or_else(|e| panic!("{}: example invalid: {e}", t.id));
        for seed in 0..20 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let inst =
                mediflow::teacher::mock::instance(&s.value, "", &Default::default(), &mut rng);
            validate(s, &inst)
                .unwrap_or_else(|e| panic!("{}: mock instance invalid: {e}\n{inst}", t.id));
        }
        // And a wrong instance fails.
        assert!(validate(s, &serde_json::json!({"unexpected": true})).is_err());
    }
}
