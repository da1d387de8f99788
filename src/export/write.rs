//! Writing one split as Hugging Face datasets expect it: Parquet shards
//! `data/<split>-0000N-of-0000M.parquet` (Snappy) with JSONL twins under `jsonl/`.

use anyhow::Context;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use std::io::Write;
use std::path::Path;

/// Rows per shard.
pub const SHARD_ROWS: usize = 100_000;

/// Rows -> one RecordBatch against `schema` (arrow-json's serde decoder, strict: a field
/// the schema lacks is an error).
pub fn to_batch(schema: &SchemaRef, rows: &[Value]) -> anyhow::Result<RecordBatch> {
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .with_strict_mode(true)
        .build_decoder()?;
    decoder.serialize(rows)?;
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

/// Write `rows` of `split` under `out`; returns the Parquet paths relative to `out`.
pub fn write_split(
    out: &Path,
    split: &str,
    schema: &SchemaRef,
    rows: &[Value],
) -> anyhow::Result<Vec<String>> {
    let shards = rows.len().div_ceil(SHARD_ROWS).max(1);
    let mut paths = Vec::new();
    for (k, chunk) in rows.chunks(SHARD_ROWS).enumerate() {
        let name = format!("{split}-{k:05}-of-{shards:05}");
        let rel = format!("data/{name}.parquet");
        let path = out.join(&rel);
        let batches = chunk.chunks(4096).map(|part| to_batch(schema, part));
        crate::sink::write_batches(&path, schema.clone(), batches)?;
        let jsonl = out.join("jsonl").join(format!("{name}.jsonl"));
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&jsonl)
                .with_context(|| format!("creating {}", jsonl.display()))?,
        );
        for r in chunk {
            serde_json::to_writer(&mut f, r)?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
        paths.push(rel);
    }
    Ok(paths)
}

/// Every row of a Parquet file as a JSON object (arrow-json omits null columns).
pub fn read_parquet_rows(path: &Path) -> anyhow::Result<Vec<Value>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        let mut buf = Vec::new();
        {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
            w.write(&batch?)?;
            w.finish()?;
        }
        for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push(serde_json::from_slice(line)?);
        }
    }
    Ok(out)
}
