"""mediflow eval metrics for lm-evaluation-harness (written by `mediflow eval export-lm-eval`).

Mirrors src/eval/answer.rs and src/eval/metrics.rs: the answer must be the JSON object the
task's schema describes (one surrounding Markdown code fence tolerated); a malformed answer
scores 0 on every metric. Each document carries its schema and metric specs.
"""
import json
import math
import re

try:
    import jsonschema
except ImportError:  # schema checks need the jsonschema package
    jsonschema = None


def _parse(text, schema):
    t = text.strip()
    for fence in ("```json", "```"):
        if t.startswith(fence) and t.rstrip().endswith("```") and len(t) > 2 * len(fence):
            t = t[len(fence):].rstrip()[:-3]
            break
    try:
        v = json.loads(t.strip())
    except ValueError:
        return None
    if jsonschema is None:
        raise RuntimeError("mediflow tasks need the jsonschema package (pip install jsonschema)")
    try:
        jsonschema.validate(v, schema)
    except jsonschema.ValidationError:
        return None
    return v


def _get(v, path):
    for k in path.split("."):
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


def _norm(s):
    return " ".join(s.split()).lower().strip(" \t\n!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _scalar(v):
    if v is None:
        return None
    if isinstance(v, str):
        return _norm(v)
    return json.dumps(v)


def _prf(pred, gold):
    if not pred and not gold:
        return 1.0, 1.0, 1.0
    tp = len(pred & gold)
    p = tp / len(pred) if pred else 0.0
    r = tp / len(gold) if gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _tuples(v, field, keys):
    items = _get(v, field)
    items = items if isinstance(items, list) else []
    return {"\x1f".join(_scalar(o.get(k)) or "" for k in keys) for o in items if isinstance(o, dict)}


def _codes(v, field, key):
    items = _get(v, field)
    items = items if isinstance(items, list) else []
    out = set()
    for o in items:
        c = o.get(key) if isinstance(o, dict) else None
        if isinstance(c, str) and c.strip():
            out.add(c.strip().upper().replace(".", ""))
    return out


def _tokens(s):
    return [t.lower() for t in re.split(r"[^\w]|_", s) if t]


def _rouge_l(pred, gold):
    a, b = _tokens(pred), _tokens(gold)
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            cur[j + 1] = prev[j] + 1 if x == y else max(cur[j], prev[j + 1])
        prev = cur
    lcs = prev[len(b)]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)


def _names(m):
    return {
        "schema_valid": ["schema_valid"],
        "accuracy": ["accuracy"],
        "span_f1": ["span_f1", "span_precision", "span_recall"],
        "code_match": ["code_exact_f1", "code_exact_precision", "code_exact_recall",
                       "code_approx_f1"],
        "rouge_l": ["rouge_l"],
    }[m["kind"]]


def _score(m, ans, ref):
    k = m["kind"]
    if k == "schema_valid":
        return [1.0]
    if k == "accuracy":
        return [1.0 if _scalar(_get(ans, m["field"])) == _scalar(_get(ref, m["field"])) else 0.0]
    if k == "span_f1":
        p, r, f = _prf(_tuples(ans, m["field"], m["keys"]), _tuples(ref, m["field"], m["keys"]))
        return [f, p, r]
    if k == "code_match":
        pred, gold = _codes(ans, m["field"], m["key"]), _codes(ref, m["field"], m["key"])
        p, r, f = _prf(pred, gold)
        _, _, fa = _prf({c[:3] for c in pred}, {c[:3] for c in gold})
        return [f, p, r, fa]
    if k == "rouge_l":
        def text(v):
            return "\n".join(x for x in (_get(v, f) for f in m["fields"]) if isinstance(x, str))
        return [_rouge_l(text(ans), text(ref))]
    raise ValueError(k)


def process_results(doc, results):
    metrics = json.loads(doc["metrics"])
    ref = json.loads(doc["reference"])
    ans = _parse(results[0], json.loads(doc["schema"]))
    out = {}
    for m in metrics:
        values = [0.0] * len(_names(m)) if ans is None else _score(m, ans, ref)
        out.update(zip(_names(m), values))
    return out


def mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")
