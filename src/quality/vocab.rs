//! The clinical vocabulary the gate measures text against, built from our own data: the
//! ICD-10-CM descriptions of the disease and injury chapters (A00-T88), the taxonomy's
//! document sections, names and descriptions, and a hand-kept list of clinical
//! abbreviations, lay symptom words, units and drug names. Built once per taxonomy.

use crate::taxonomy::Taxonomy;
use rustc_hash::FxHashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

/// A lowercased word of a text.
pub type Word = String;

/// Lowercased alphanumeric words of `s` (letters and digits; everything else splits).
pub fn words(s: &str) -> Vec<Word> {
    let mut out = Vec::with_capacity(s.len() / 6 + 1);
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // ASCII runs byte by byte; other characters decoded (letters and digits of any
        // script are word characters).
        let start = i;
        let mut ascii_only = true;
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_alphanumeric() {
                i += 1;
            } else if c >= 0x80 {
                let ch = s[i..].chars().next().expect("char boundary");
                if !ch.is_alphanumeric() {
                    break;
                }
                ascii_only = false;
                i += ch.len_utf8();
            } else {
                break;
            }
        }
        if i > start {
            let w = &s[start..i];
            out.push(if ascii_only {
                w.to_ascii_lowercase()
            } else {
                w.to_lowercase()
            });
        } else {
            // A separator: ASCII, or a non-alphanumeric character.
            i += s[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// Lowercased words joined by single spaces: punctuation and whitespace dropped (quotes,
/// commas and dashes differ in copies).
pub fn loose(s: &str) -> String {
    words(s).join(" ")
}

/// `needle` occurs in `hay` not inside a longer word.
pub fn contains_word(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// The first `n` characters of a word: a crude stem for matching inflections.
pub fn stem(w: &str, n: usize) -> &str {
    match w.char_indices().nth(n) {
        Some((i, _)) => &w[..i],
        None => w,
    }
}

pub const STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
    "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both",
    "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few",
    "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers",
    "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its",
    "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off",
    "on", "once", "only", "or", "other", "our", "ours", "out", "over", "own", "same", "she",
    "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "then",
    "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up",
    "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why",
    "will", "with", "would", "you", "your", "yours", "yourself", "may", "might", "must", "shall",
    "per", "via", "within", "without", "upon", "etc", "yes", "ok", "okay", "get", "got", "went",
    "go", "going", "make", "made", "like", "well", "really", "one", "two", "three", "us", "let",
    "lets", "s", "t", "don", "didn", "doesn", "isn", "wasn", "ve", "ll", "re", "d", "m", "im",
    "it's", "there's", "much", "many", "every", "even", "still", "back", "since",
];

/// Words too common in ICD descriptions and clinical prose to say anything specific.
const GENERIC_WORDS: &[&str] = &[
    "unspecified",
    "specified",
    "other",
    "type",
    "site",
    "sites",
    "part",
    "parts",
    "initial",
    "encounter",
    "subsequent",
    "sequela",
    "left",
    "right",
    "bilateral",
    "unilateral",
    "acute",
    "chronic",
    "disease",
    "diseases",
    "disorder",
    "disorders",
    "condition",
    "conditions",
    "history",
    "patient",
    "patients",
    "personal",
    "family",
    "status",
    "finding",
    "findings",
    "abnormal",
    "elevated",
    "due",
    "use",
    "used",
    "using",
    "level",
    "levels",
    "region",
    "routine",
    "healing",
    "delayed",
    "nonunion",
    "malunion",
    "complication",
    "complications",
    "classified",
    "elsewhere",
    "mild",
    "moderate",
    "severe",
    "first",
    "second",
    "third",
    "without",
    "with",
    "involving",
    "multiple",
    "single",
    "total",
    "partial",
    "primary",
    "secondary",
    "stage",
    "degree",
    "certain",
    "related",
    "associated",
    "following",
    "except",
    "including",
    "nos",
    "nec",
    "not",
    "other",
    "upper",
    "lower",
    "anterior",
    "posterior",
    "medial",
    "lateral",
    "major",
    "minor",
    "late",
    "early",
    "new",
    "old",
    "follow",
    "care",
    "day",
    "days",
    "daily",
    "time",
    "times",
    "week",
    "weeks",
    "year",
    "years",
    "month",
    "months",
    "hour",
    "hours",
    "normal",
    "noted",
    "note",
    "plan",
    "given",
    "continue",
    "current",
    "recent",
    "report",
    "reported",
    "reports",
    "result",
    "results",
    "test",
    "tests",
];

/// Abbreviations, lay symptom words and other clinical words ICD descriptions lack.
const EXTRA_CLINICAL: &[&str] = &[
    "pt",
    "pts",
    "hx",
    "htn",
    "dm",
    "dm2",
    "t2dm",
    "t1dm",
    "ckd",
    "cad",
    "chf",
    "hfref",
    "hfpef",
    "copd",
    "afib",
    "sob",
    "doe",
    "cp",
    "bp",
    "hr",
    "rr",
    "spo2",
    "sao2",
    "o2",
    "temp",
    "wbc",
    "hgb",
    "hb",
    "hct",
    "plt",
    "inr",
    "ptt",
    "bun",
    "cr",
    "bmp",
    "cbc",
    "cmp",
    "lfts",
    "ast",
    "alt",
    "alk",
    "bili",
    "tsh",
    "a1c",
    "hba1c",
    "ldl",
    "hdl",
    "bnp",
    "troponin",
    "lactate",
    "ekg",
    "ecg",
    "echo",
    "cxr",
    "ct",
    "cta",
    "mri",
    "mra",
    "pet",
    "xr",
    "iv",
    "im",
    "po",
    "sq",
    "sc",
    "subq",
    "prn",
    "bid",
    "tid",
    "qid",
    "qd",
    "qhs",
    "qam",
    "qpm",
    "q4h",
    "q6h",
    "q8h",
    "q12h",
    "mg",
    "mcg",
    "ml",
    "mmhg",
    "meq",
    "mmol",
    "dl",
    "kg",
    "units",
    "unit",
    "tab",
    "tabs",
    "cap",
    "caps",
    "dx",
    "ddx",
    "tx",
    "rx",
    "sx",
    "abx",
    "nkda",
    "nka",
    "ros",
    "hpi",
    "pmh",
    "psh",
    "fhx",
    "shx",
    "cc",
    "ed",
    "er",
    "icu",
    "micu",
    "sicu",
    "ccu",
    "pacu",
    "nicu",
    "ob",
    "gyn",
    "obgyn",
    "ent",
    "gi",
    "gu",
    "cv",
    "neuro",
    "psych",
    "ortho",
    "peds",
    "f/u",
    "fu",
    "s/p",
    "sp",
    "c/o",
    "r/o",
    "neg",
    "pos",
    "wnl",
    "nad",
    "rrr",
    "ctab",
    "ctax2",
    "perrla",
    "eomi",
    "aox3",
    "ox3",
    "a&o",
    "labs",
    "lab",
    "dose",
    "doses",
    "dosing",
    "medication",
    "medications",
    "meds",
    "med",
    "tablet",
    "tablets",
    "capsule",
    "capsules",
    "inhaler",
    "injection",
    "infusion",
    "drip",
    "doctor",
    "doctors",
    "dr",
    "nurse",
    "nursing",
    "rn",
    "md",
    "np",
    "pa",
    "clinic",
    "hospital",
    "admission",
    "admitted",
    "discharge",
    "discharged",
    "appointment",
    "prescription",
    "prescribed",
    "pharmacy",
    "pharmacist",
    "symptom",
    "symptoms",
    "pain",
    "fever",
    "cough",
    "nausea",
    "vomiting",
    "diarrhea",
    "rash",
    "swelling",
    "swollen",
    "dizzy",
    "dizziness",
    "headache",
    "headaches",
    "tired",
    "fatigue",
    "breath",
    "breathing",
    "breathe",
    "chest",
    "stomach",
    "belly",
    "throat",
    "wound",
    "bleeding",
    "blood",
    "pressure",
    "sugar",
    "glucose",
    "insulin",
    "heart",
    "lung",
    "lungs",
    "kidney",
    "kidneys",
    "liver",
    "vitals",
    "exam",
    "examination",
    "physical",
    "assessment",
    "diagnosis",
    "diagnosed",
    "treatment",
    "treated",
    "therapy",
    "surgery",
    "surgical",
    "procedure",
    "operative",
    "postoperative",
    "preoperative",
    "biopsy",
    "imaging",
    "radiology",
    "scan",
    "xray",
    "ultrasound",
    "mammogram",
    "screening",
    "vaccine",
    "vaccination",
    "immunization",
    "allergy",
    "allergies",
    "allergic",
    "referral",
    "consult",
    "consultation",
    "specialist",
    "physician",
    "clinician",
    "provider",
    "urgent",
    "emergency",
    "triage",
    "ambulance",
    "icd",
    "cpt",
    "diagnostic",
    "prognosis",
    "impression",
    "findings",
    "unremarkable",
    "afebrile",
    "febrile",
    "tachycardia",
    "bradycardia",
    "tachypneic",
    "hypoxic",
    "edema",
    "crackles",
    "wheezing",
    "murmur",
    "tender",
    "tenderness",
    "palpation",
    "auscultation",
    "denies",
    "reports",
    "complains",
    "presented",
    "presents",
    "mmol/l",
    "mg/dl",
    "bpm",
    "sats",
    "saturation",
    "oxygen",
    "cannula",
    "ventilator",
    "intubated",
    "extubated",
    "sedation",
    "anesthesia",
    "incision",
    "sutures",
    "dressing",
    "catheter",
    "foley",
    "picc",
    "stent",
    "pacemaker",
    "dialysis",
    "chemo",
    "chemotherapy",
    "radiation",
    "oncology",
    "tumor",
    "tumour",
    "cancer",
    "mass",
    "lesion",
    "nodule",
    "cyst",
    "benign",
    "malignant",
    "metastatic",
    "smoker",
    "smoking",
    "alcohol",
    "etoh",
    "tobacco",
    "pack",
    "caregiver",
    "hospice",
    "rehab",
    "rehabilitation",
    "physiotherapy",
    "pt/ot",
    "mobility",
    "gait",
    "ambulating",
    "ambulates",
    "weight",
    "bmi",
    "pulse",
    "temperature",
    "respiratory",
    "cardiac",
    "pulmonary",
    "renal",
    "hepatic",
    "neurologic",
    "neurological",
    "abdominal",
    "abdomen",
    "extremities",
    "skin",
    "pupils",
    "consent",
    "trial",
    "enrolled",
    "randomized",
    "placebo",
    "cohort",
    "eligibility",
    "inclusion",
    "exclusion",
    "adverse",
    "dosage",
    "contraindications",
    "indications",
    "warnings",
    "precautions",
    "pharmacokinetics",
    "claim",
    "authorization",
    "coverage",
    "copay",
    "insurance",
    "billing",
    "billed",
    "coding",
    "coded",
    "codes",
    "visit",
    "visits",
    "checkup",
    "followup",
    "recheck",
    "refill",
    "refills",
    "pills",
    "pill",
    "otc",
    "ibuprofen",
    "tylenol",
    "advil",
    "motrin",
    "antibiotic",
    "antibiotics",
    "steroid",
    "steroids",
    "painkiller",
    "sick",
    "ill",
    "illness",
    "injury",
    "injured",
    "hurts",
    "hurt",
    "ache",
    "aching",
    "sore",
    "itchy",
    "itching",
    "vomit",
    "threw",
    "faint",
    "fainted",
    "numbness",
    "tingling",
    "weakness",
    "shortness",
    "palpitations",
    "anxiety",
    "depression",
    "insomnia",
    "sleep",
    "appetite",
    "bowel",
    "urine",
    "urinary",
    "stool",
    "constipation",
    "pregnant",
    "pregnancy",
    "prenatal",
    "postpartum",
    "newborn",
    "infant",
    "pediatric",
    "geriatric",
    "elderly",
    "dementia",
    "stroke",
    "seizure",
    "seizures",
    "diabetic",
    "hypertensive",
    "asthmatic",
    "inhalers",
    "nebulizer",
    "spirometry",
    "fev1",
    "fvc",
    "specimen",
    "culture",
    "cultures",
    "gram",
    "sensitivity",
    "susceptible",
    "resistant",
    "pathology",
    "cytology",
    "histology",
    "margins",
    "carcinoma",
    "grade",
    "staging",
];

/// Drug names: a list of common ones and the brands we map to them.
const DRUGS: &[&str] = &[
    "aspirin",
    "insulin",
    "heparin",
    "warfarin",
    "acetaminophen",
    "paracetamol",
    "ibuprofen",
    "naproxen",
    "metformin",
    "furosemide",
    "bumetanide",
    "torsemide",
    "spironolactone",
    "hydrochlorothiazide",
    "chlorthalidone",
    "prednisone",
    "prednisolone",
    "ceftriaxone",
    "cefazolin",
    "cephalexin",
    "cefepime",
    "vancomycin",
    "piperacillin",
    "tazobactam",
    "meropenem",
    "albuterol",
    "ipratropium",
    "tiotropium",
    "fluticasone",
    "budesonide",
    "montelukast",
    "nitroglycerin",
    "morphine",
    "hydromorphone",
    "fentanyl",
    "oxycodone",
    "hydrocodone",
    "tramadol",
    "gabapentin",
    "pregabalin",
    "amoxicillin",
    "azithromycin",
    "doxycycline",
    "levothyroxine",
    "digoxin",
    "amiodarone",
    "diltiazem",
    "verapamil",
    "clopidogrel",
    "ticagrelor",
    "apixaban",
    "rivaroxaban",
    "dabigatran",
    "enoxaparin",
    "ondansetron",
    "metoclopramide",
    "pantoprazole",
    "omeprazole",
    "famotidine",
    "sertraline",
    "fluoxetine",
    "citalopram",
    "escitalopram",
    "trazodone",
    "lorazepam",
    "alprazolam",
    "diazepam",
    "haloperidol",
    "quetiapine",
    "olanzapine",
    "risperidone",
    "lithium",
    "allopurinol",
    "colchicine",
    "methotrexate",
    "tamoxifen",
    "letrozole",
    "levetiracetam",
    "phenytoin",
    "valproate",
    "lamotrigine",
    "topiramate",
    "sumatriptan",
    "donepezil",
    "memantine",
    "tamsulosin",
    "finasteride",
    "sildenafil",
    "naloxone",
    "buprenorphine",
    "methadone",
    "ketorolac",
    "dexamethasone",
    "hydrocortisone",
    "methylprednisolone",
    "glargine",
    "lispro",
    "aspart",
    "detemir",
    "semaglutide",
    "liraglutide",
    "empagliflozin",
    "dapagliflozin",
    "sitagliptin",
    "glipizide",
    "glyburide",
    "glimepiride",
    "atorvastatin",
    "rosuvastatin",
    "simvastatin",
    "pravastatin",
    "lisinopril",
    "enalapril",
    "ramipril",
    "losartan",
    "valsartan",
    "sacubitril",
    "amlodipine",
    "nifedipine",
    "metoprolol",
    "carvedilol",
    "atenolol",
    "propranolol",
    "hydralazine",
    "clonidine",
    "labetalol",
    "nitrofurantoin",
    "trimethoprim",
    "sulfamethoxazole",
    "ciprofloxacin",
    "levofloxacin",
    "clindamycin",
    "metronidazole",
    "fluconazole",
    "acyclovir",
    "valacyclovir",
    "oseltamivir",
    "epinephrine",
    "norepinephrine",
    "vasopressin",
    "propofol",
    "midazolam",
    "ketamine",
    "lidocaine",
    "bupivacaine",
    "cetirizine",
    "loratadine",
    "diphenhydramine",
    "melatonin",
    "cyanocobalamin",
    "ferrous",
    "alteplase",
    "tenecteplase",
    "adalimumab",
    "infliximab",
    "rituximab",
    "pembrolizumab",
    "nivolumab",
    "trastuzumab",
    "bevacizumab",
    "imatinib",
    "cisplatin",
    "carboplatin",
    "oxaliplatin",
    "doxorubicin",
    "paclitaxel",
    "docetaxel",
    "cyclophosphamide",
    "tacrolimus",
    "mycophenolate",
    "azathioprine",
    "hydroxychloroquine",
    "sulfasalazine",
    "mesalamine",
    "lactulose",
    "rifaximin",
    "senna",
    "docusate",
    "polyethylene",
    "bisacodyl",
    "potassium",
    "magnesium",
    "calcium",
    "zinc",
    "thiamine",
    "folate",
    "ergocalciferol",
    "cholecalciferol",
    "nicotine",
    "varenicline",
    "bupropion",
    "venlafaxine",
    "duloxetine",
    "mirtazapine",
    "amitriptyline",
    "nortriptyline",
    "baclofen",
    "cyclobenzaprine",
    "tizanidine",
    "oxybutynin",
    "terazosin",
    "doxazosin",
    "estradiol",
    "progesterone",
    "testosterone",
    "medroxyprogesterone",
    "misoprostol",
    "oxytocin",
    "magnesium",
    "terbutaline",
    "betamethasone",
    "mupirocin",
    "nystatin",
    "clotrimazole",
    "permethrin",
    "ivermectin",
    "albendazole",
    "isoniazid",
    "rifampin",
    "ethambutol",
    "pyrazinamide",
    "dolutegravir",
    "tenofovir",
    "emtricitabine",
    "sofosbuvir",
    "ertapenem",
    "linezolid",
    "daptomycin",
    "gentamicin",
    "tobramycin",
    "amikacin",
    "aztreonam",
    "cefuroxime",
    "ceftazidime",
    "cefdinir",
    "penicillin",
    "ampicillin",
    "sulbactam",
    "bactrim",
    "dopamine",
    "dobutamine",
    "milrinone",
    "atropine",
    "adenosine",
    "esmolol",
    "nicardipine",
    "clevidipine",
    "argatroban",
    "bivalirudin",
    "fondaparinux",
    "protamine",
    "vitamin",
    "ondansetron",
    "promethazine",
    "prochlorperazine",
    "scopolamine",
    "meclizine",
];

/// Brand names mapped to the generic the document may use instead (and back).
const BRANDS: &[(&str, &str)] = &[
    ("lasix", "furosemide"),
    ("coumadin", "warfarin"),
    ("eliquis", "apixaban"),
    ("xarelto", "rivaroxaban"),
    ("lipitor", "atorvastatin"),
    ("crestor", "rosuvastatin"),
    ("zocor", "simvastatin"),
    ("norvasc", "amlodipine"),
    ("toprol", "metoprolol"),
    ("lopressor", "metoprolol"),
    ("synthroid", "levothyroxine"),
    ("glucophage", "metformin"),
    ("zofran", "ondansetron"),
    ("tylenol", "acetaminophen"),
    ("advil", "ibuprofen"),
    ("motrin", "ibuprofen"),
    ("plavix", "clopidogrel"),
    ("protonix", "pantoprazole"),
    ("prilosec", "omeprazole"),
    ("lantus", "glargine"),
    ("humalog", "lispro"),
    ("novolog", "aspart"),
    ("zoloft", "sertraline"),
    ("prozac", "fluoxetine"),
    ("ativan", "lorazepam"),
    ("xanax", "alprazolam"),
    ("valium", "diazepam"),
    ("keppra", "levetiracetam"),
    ("augmentin", "amoxicillin"),
    ("zithromax", "azithromycin"),
    ("cipro", "ciprofloxacin"),
    ("levaquin", "levofloxacin"),
    ("flagyl", "metronidazole"),
    ("keflex", "cephalexin"),
    ("rocephin", "ceftriaxone"),
    ("vanco", "vancomycin"),
    ("zosyn", "piperacillin"),
    ("norco", "hydrocodone"),
    ("percocet", "oxycodone"),
    ("narcan", "naloxone"),
    ("benadryl", "diphenhydramine"),
    ("ventolin", "albuterol"),
    ("proair", "albuterol"),
    ("flomax", "tamsulosin"),
    ("ozempic", "semaglutide"),
    ("jardiance", "empagliflozin"),
    ("farxiga", "dapagliflozin"),
    ("januvia", "sitagliptin"),
    ("entresto", "sacubitril"),
    ("lovenox", "enoxaparin"),
    ("neurontin", "gabapentin"),
    ("lyrica", "pregabalin"),
    ("deltasone", "prednisone"),
    ("decadron", "dexamethasone"),
    ("solumedrol", "methylprednisolone"),
    ("aldactone", "spironolactone"),
    ("hctz", "hydrochlorothiazide"),
    ("kcl", "potassium"),
    ("asa", "aspirin"),
    ("apap", "acetaminophen"),
    ("ntg", "nitroglycerin"),
    ("nitro", "nitroglycerin"),
    ("zestril", "lisinopril"),
    ("prinivil", "lisinopril"),
    ("cozaar", "losartan"),
    ("diovan", "valsartan"),
    ("coreg", "carvedilol"),
    ("lanoxin", "digoxin"),
    ("cordarone", "amiodarone"),
    ("cardizem", "diltiazem"),
    ("brilinta", "ticagrelor"),
    ("pradaxa", "dabigatran"),
    ("seroquel", "quetiapine"),
    ("zyprexa", "olanzapine"),
    ("risperdal", "risperidone"),
    ("haldol", "haloperidol"),
    ("ultram", "tramadol"),
    ("dilaudid", "hydromorphone"),
    ("toradol", "ketorolac"),
    ("imitrex", "sumatriptan"),
    ("aricept", "donepezil"),
    ("namenda", "memantine"),
    ("viagra", "sildenafil"),
    ("suboxone", "buprenorphine"),
    ("humira", "adalimumab"),
    ("remicade", "infliximab"),
    ("keytruda", "pembrolizumab"),
    ("herceptin", "trastuzumab"),
    ("gleevec", "imatinib"),
];

/// Suffixes that mark a word as a drug name (international nonproprietary name stems).
const DRUG_SUFFIXES: &[&str] = &[
    "pril",
    "sartan",
    "olol",
    "alol",
    "statin",
    "azole",
    "cillin",
    "mycin",
    "micin",
    "floxacin",
    "cycline",
    "dipine",
    "parin",
    "xaban",
    "gatran",
    "tidine",
    "prazole",
    "semide",
    "thiazide",
    "formin",
    "gliptin",
    "gliflozin",
    "glutide",
    "lukast",
    "terol",
    "triptan",
    "oxetine",
    "tyline",
    "setron",
    "codone",
    "azepam",
    "azolam",
    "caine",
    "profen",
    "fenac",
    "vudine",
    "navir",
    "clovir",
    "ximab",
    "zumab",
    "mumab",
    "tinib",
    "platin",
    "rubicin",
    "taxel",
    "olone",
    "asone",
    "isone",
    "afil",
    "pramine",
    "peridol",
    "iapine",
    "apine",
    "idone",
    "barbital",
    "penem",
    "triptyline",
    "dronate",
];

/// Greek and Latin roots and affixes of medical terms ("-itis", "cardi-", "-ectomy").
const MEDICAL_AFFIXES: &[&str] = &[
    "itis",
    "osis",
    "emia",
    "aemia",
    "oma",
    "omas",
    "ectomy",
    "otomy",
    "ostomy",
    "plasty",
    "scopy",
    "scopic",
    "graphy",
    "algia",
    "pathy",
    "penia",
    "cytosis",
    "megaly",
    "uria",
    "trophy",
    "plasia",
    "plegia",
    "paresis",
    "rrhea",
    "rrhage",
    "lysis",
    "stenosis",
    "ectasis",
    "spasm",
    "centesis",
    "ptysis",
    "pnea",
    "cardia",
    "kalemia",
    "natremia",
    "glycemia",
    "thermia",
    "tension",
    "coccus",
    "cocci",
    "bacter",
    "virus",
    "viral",
    "bacterial",
    "fungal",
    "carcin",
    "sarcoma",
    "lymph",
    "neur",
    "cardi",
    "hepat",
    "nephr",
    "pulmon",
    "pneum",
    "gastr",
    "enter",
    "derm",
    "oste",
    "arthr",
    "encephal",
    "cerebr",
    "thromb",
    "embol",
    "hemo",
    "haem",
    "angi",
    "bronch",
    "myel",
    "leuk",
    "onco",
    "vascul",
    "arter",
    "ven",
    "renal",
    "hepatic",
    "cardiac",
    "pancrea",
    "thyro",
    "adren",
    "endocrin",
    "diabet",
    "insulin",
    "glyc",
    "lipid",
    "chol",
    "uret",
    "urin",
    "vesic",
    "prostat",
    "uter",
    "ovar",
    "cervic",
    "mamm",
    "crani",
    "spin",
    "vertebr",
    "lumb",
    "thorac",
    "abdomin",
    "pelv",
    "femor",
    "tibi",
    "fibul",
    "humer",
    "radi",
    "uln",
    "carp",
    "tars",
    "phalan",
    "fract",
    "infect",
    "inflamm",
    "ischem",
    "infarct",
    "hemorrh",
    "edema",
    "effusion",
    "abscess",
    "ulcer",
    "lesion",
    "nodul",
    "tumor",
    "neoplas",
    "malign",
    "benign",
    "metasta",
    "sepsis",
    "septic",
    "syndrome",
    "anemi",
    "apnea",
    "asthma",
    "copd",
    "hyper",
    "hypo",
    "tachy",
    "brady",
    "dys",
    "epilep",
    "seiz",
    "demen",
    "psych",
    "schizo",
    "bipolar",
    "depress",
    "anxi",
];

/// Clinical abbreviations expanded into the words a description would use.
const EXPANSIONS: &[(&str, &str)] = &[
    ("htn", "hypertension hypertensive"),
    ("dm", "diabetes mellitus"),
    ("dm2", "type 2 diabetes mellitus"),
    ("t2dm", "type 2 diabetes mellitus"),
    ("t1dm", "type 1 diabetes mellitus"),
    ("ckd", "chronic kidney disease"),
    ("cad", "coronary artery disease atherosclerotic heart"),
    ("chf", "congestive heart failure"),
    ("hfref", "heart failure systolic reduced ejection"),
    ("hfpef", "heart failure diastolic"),
    ("copd", "chronic obstructive pulmonary disease"),
    ("afib", "atrial fibrillation"),
    ("af", "atrial fibrillation"),
    ("mi", "myocardial infarction"),
    ("nstemi", "myocardial infarction non st elevation"),
    ("stemi", "myocardial infarction st elevation"),
    ("uti", "urinary tract infection"),
    ("dvt", "deep vein thrombosis embolism"),
    ("pe", "pulmonary embolism"),
    ("gerd", "gastro esophageal reflux"),
    ("hld", "hyperlipidemia"),
    ("osa", "obstructive sleep apnea"),
    ("cva", "cerebral infarction stroke"),
    ("tia", "transient cerebral ischemic attack"),
    ("aki", "acute kidney failure injury"),
    ("sob", "shortness breath dyspnea"),
    ("doe", "dyspnea exertion"),
    ("cp", "chest pain"),
    ("n/v", "nausea vomiting"),
    ("etoh", "alcohol"),
    ("bph", "prostatic hyperplasia"),
    ("ra", "rheumatoid arthritis"),
    ("oa", "osteoarthritis"),
    ("hiv", "human immunodeficiency virus"),
    ("hcv", "hepatitis c"),
    ("hbv", "hepatitis b"),
    ("tb", "tuberculosis"),
    ("ards", "respiratory distress syndrome"),
    ("ugib", "gastrointestinal hemorrhage"),
    ("gib", "gastrointestinal hemorrhage"),
    ("sbo", "intestinal obstruction"),
    ("dka", "diabetes ketoacidosis"),
    ("hhs", "hyperosmolar"),
    ("ptsd", "post traumatic stress"),
    ("mdd", "major depressive disorder"),
    ("adhd", "attention deficit hyperactivity"),
    ("ich", "intracranial hemorrhage"),
    ("sah", "subarachnoid hemorrhage"),
    ("ams", "altered mental status"),
    ("loc", "loss consciousness"),
    ("fx", "fracture"),
    ("hip", "femur hip"),
    ("pna", "pneumonia"),
    ("cap", "pneumonia"),
    ("chf", "heart failure"),
    ("esrd", "end stage renal disease"),
    ("ibd", "inflammatory bowel"),
    ("ibs", "irritable bowel"),
    ("pud", "peptic ulcer"),
    ("ckd3", "chronic kidney disease stage 3"),
    ("sirs", "systemic inflammatory response"),
    ("smoker", "nicotine tobacco dependence"),
    ("smokes", "nicotine tobacco dependence"),
    ("cigarettes", "nicotine tobacco"),
    ("smoking", "nicotine tobacco"),
    ("obese", "obesity"),
    ("overweight", "obesity"),
    ("nsr", "sinus rhythm"),
    ("lbp", "low back pain"),
];

const CLINICAL: u8 = 1;
const MEDICAL: u8 = 2;
const GENERIC: u8 = 4;
const STOP: u8 = 8;
const DRUG: u8 = 16;
const TERM: u8 = 32;

/// The classes a word belongs to (a drug-name stem counts as a drug, a term, medical and
/// clinical).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Class(u8);

impl Class {
    pub fn stop(self) -> bool {
        self.0 & STOP != 0
    }
    pub fn clinical(self) -> bool {
        self.0 & CLINICAL != 0
    }
    /// A clinical word that looks medical (a Greek or Latin root, an abbreviation we list
    /// as clinical, or a drug), as opposed to everyday words ICD descriptions also use
    /// ("head", "wall", "card").
    pub fn medical(self) -> bool {
        self.0 & MEDICAL != 0
    }
    /// A medical term with content (a root or a drug; not a lay word like "doctor").
    pub fn term(self) -> bool {
        self.0 & TERM != 0
    }
    /// A word that names a drug (listed, a known brand, or an INN stem).
    pub fn drug(self) -> bool {
        self.0 & DRUG != 0
    }
    /// A clinical word that carries content (not a stopword, not generic); words under
    /// four letters are not specific (`Vocab::is_specific` checks the length).
    pub fn specific(self) -> bool {
        self.0 & (GENERIC | STOP) == 0 && self.clinical()
    }
}

/// What the gate knows about clinical language: one map from a word to its classes,
/// computed once, so a record's words are classified by one lookup each.
pub struct Vocab {
    /// By `hash` of the word.
    flags: FxHashMap<u64, u8>,
    brands: FxHashMap<&'static str, &'static str>,
    expansions: FxHashMap<&'static str, &'static str>,
}

impl Vocab {
    fn build(tax: &Taxonomy) -> Vocab {
        let mut flags: FxHashMap<String, u8> = FxHashMap::default();
        let mut set = |w: &str, f: u8| *flags.entry(w.to_string()).or_default() |= f;
        for w in STOPWORDS {
            set(w, STOP);
        }
        let mut clinical_text = Vec::new();
        // Chapters 1-19 (A00-T88): diseases, findings and injuries. The external-cause,
        // place-of-occurrence and health-status chapters (V-Z) name everyday things
        // (vehicles, sports, hotels) that say nothing about clinical text.
        for c in tax
            .icd
            .codes
            .iter()
            .filter(|c| c.code.as_bytes()[0] <= b'T')
        {
            clinical_text.push(c.description.as_str());
        }
        for d in &tax.documents {
            clinical_text.push(d.name.as_str());
            clinical_text.extend(d.sections.iter().map(String::as_str));
        }
        clinical_text.extend(tax.tasks.iter().map(|t| t.name.as_str()));
        for text in clinical_text {
            for w in words(text) {
                if w.len() >= 3
                    && !w.chars().all(|c| c.is_ascii_digit())
                    && !STOPWORDS.contains(&w.as_str())
                {
                    set(&w, CLINICAL);
                }
            }
        }
        for w in GENERIC_WORDS {
            set(w, GENERIC);
        }
        for w in EXTRA_CLINICAL {
            set(w, CLINICAL | MEDICAL);
        }
        for w in DRUGS.iter().chain(BRANDS.iter().map(|(b, _)| b)) {
            set(w, CLINICAL | MEDICAL | DRUG | TERM);
        }
        for (w, f) in flags.iter_mut() {
            if *f & CLINICAL != 0
                && *f & (GENERIC | STOP) == 0
                && w.len() >= 6
                && has_medical_affix(w)
            {
                *f |= MEDICAL | TERM;
            }
        }
        Vocab {
            flags: flags.into_iter().map(|(w, f)| (hash(&w), f)).collect(),
            brands: BRANDS.iter().copied().collect(),
            expansions: EXPANSIONS.iter().copied().collect(),
        }
    }

    /// The vocabulary of `tax`, built on first use and shared.
    pub fn of(tax: &Taxonomy) -> Arc<Vocab> {
        // The first taxonomy's vocabulary without a lock (one process, one taxonomy, as a
        // rule); any other behind one.
        static FIRST: OnceLock<(String, Arc<Vocab>)> = OnceLock::new();
        let (hash, v) = FIRST.get_or_init(|| (tax.hash.clone(), Arc::new(Vocab::build(tax))));
        if *hash == tax.hash {
            return v.clone();
        }
        static CACHE: LazyLock<Mutex<Option<(String, Arc<Vocab>)>>> =
            LazyLock::new(|| Mutex::new(None));
        let mut slot = CACHE.lock().expect("vocab cache");
        match &*slot {
            Some((hash, v)) if *hash == tax.hash => v.clone(),
            _ => {
                let v = Arc::new(Vocab::build(tax));
                *slot = Some((tax.hash.clone(), v.clone()));
                v
            }
        }
    }

    /// The classes of `w`, whose `hash` is `h` (callers that hashed the word already pass
    /// it).
    pub fn class_hashed(&self, w: &str, h: u64) -> Class {
        const STEM: u8 = CLINICAL | MEDICAL | TERM | DRUG;
        let f = self.flags.get(&h).copied().unwrap_or(0);
        Class(match f & STEM != STEM && drug_stem(w) {
            true => f | STEM,
            false => f,
        })
    }

    pub fn class(&self, w: &str) -> Class {
        self.class_hashed(w, hash(w))
    }

    pub fn is_stop(&self, w: &str) -> bool {
        self.class(w).stop()
    }

    pub fn is_clinical(&self, w: &str) -> bool {
        self.class(w).clinical()
    }

    pub fn is_specific(&self, w: &str) -> bool {
        w.len() >= 4 && self.class(w).specific()
    }

    pub fn is_medical(&self, w: &str) -> bool {
        self.class(w).medical()
    }

    pub fn is_term(&self, w: &str) -> bool {
        self.class(w).term()
    }

    pub fn is_drug(&self, w: &str) -> bool {
        self.class(w).drug()
    }

    /// The generic a brand stands for (or the word itself).
    pub fn generic_drug<'a>(&'a self, w: &'a str) -> &'a str {
        self.brands.get(w).copied().unwrap_or(w)
    }

    /// The words an abbreviation expands to, if we know it.
    pub fn expand(&self, w: &str) -> Option<&'static str> {
        self.expansions.get(w).copied()
    }
}

/// A word with a drug name's INN stem ("-pril", "-sartan", "-mab").
fn drug_stem(w: &str) -> bool {
    // The suffixes by length, so a word costs one set lookup per length.
    static BY_LEN: LazyLock<Vec<(usize, rustc_hash::FxHashSet<&'static str>)>> =
        LazyLock::new(|| {
            let mut by: Vec<(usize, rustc_hash::FxHashSet<&str>)> = Vec::new();
            for s in DRUG_SUFFIXES {
                match by.iter_mut().find(|(n, _)| *n == s.len()) {
                    Some((_, set)) => {
                        set.insert(s);
                    }
                    None => by.push((s.len(), [*s].into_iter().collect())),
                }
            }
            by
        });
    w.len() >= 6
        && w.bytes().all(|c| c.is_ascii_lowercase())
        && BY_LEN
            .iter()
            .any(|(n, set)| w.len() > n + 2 && set.contains(&w[w.len() - n..]))
}

/// A regex with ASCII word boundaries: a Unicode `\b` keeps the regex crate off its fast
/// DFA engines, and the gate's patterns only ever bound ASCII words.
pub fn regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&ascii_boundaries(pattern))
}

/// `pattern` with its word boundaries ASCII ones (see `regex`).
pub fn ascii_boundaries(pattern: &str) -> String {
    pattern.replace(r"\b", r"(?-u:\b)")
}

/// A 64-bit hash of a word, for sets of a record's words that need no allocation.
pub fn hash(w: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(w.as_bytes())
}

fn has_medical_affix(w: &str) -> bool {
    MEDICAL_AFFIXES.iter().any(|a| w.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_normalisation() {
        assert_eq!(
            words("SpO2 95% on 2L, x3d."),
            ["spo2", "95", "on", "2l", "x3d"]
        );
        assert_eq!(loose("\"Chest pain\" — resolved."), "chest pain resolved");
        // Letters of any script are word characters; other characters split.
        assert_eq!(
            words("Café ÜBER—naïve 5µg"),
            ["café", "über", "naïve", "5µg"]
        );
        // Drug-name stems, by suffix length.
        assert!(drug_stem("lisinopril") && drug_stem("olmesartan") && !drug_stem("april"));
        assert_eq!(stem("furosemide", 5), "furos");
        assert_eq!(stem("bp", 5), "bp");
    }

    #[test]
    fn vocabulary_knows_clinical_words_and_drugs() {
        let tax = &crate::quality::filters::tests::fixture().0;
        let v = Vocab::of(tax);
        for w in [
            "pneumonia",
            "femur",
            "htn",
            "furosemide",
            "lisinopril",
            "discharge",
        ] {
            assert!(v.is_clinical(w), "{w}");
        }
        for w in ["banana", "oven", "flour", "hotel", "football"] {
            assert!(!v.is_clinical(w), "{w}");
        }
        assert!(v.is_drug("metoprolol") && v.is_drug("lasix") && v.is_drug("olmesartan"));
        assert!(!v.is_drug("because") && !v.is_drug("provide"));
        assert!(v.is_specific("pneumonia") && !v.is_specific("unspecified"));
        assert_eq!(v.generic_drug("lasix"), "furosemide");
    }
}
