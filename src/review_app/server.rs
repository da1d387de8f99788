//! The review app's HTTP server: the page (`GET /`), the queue (`GET /api/items`) and
//! decisions (`POST /api/decisions`), each journaled and fsynced before the answer.

use super::edit;
use super::items::{self, Item};
use crate::error::{Error, Problem};
use crate::quality::judge::DIMENSIONS;
use crate::review::journal::{self, Decision, Edit, Journal, Verdict};
use crate::schemas::Schemas;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

const PAGE: &str = include_str!("page.html");

pub struct Options {
    pub run: PathBuf,
    pub addr: SocketAddr,
    pub reviewer: String,
    /// Required on every API call (`Authorization: Bearer T`); needed for a
    /// non-loopback address.
    pub token: Option<String>,
    /// How many of the run's rejects to add to the queue (seeded sample).
    pub include_rejects: usize,
    pub seed: u64,
}

struct App {
    items: Vec<Item>,
    index: HashMap<String, usize>,
    reviewer: String,
    token: Option<String>,
    /// The run's schemas, or why they are not known (a `json` edit is then refused).
    schemas: Result<Schemas, String>,
    journal: Mutex<Journal>,
    /// This reviewer's latest decision per record.
    mine: Mutex<HashMap<String, Decision>>,
}

pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
    /// The address to open (with `?token=` when there is one).
    pub url: String,
    pub items: usize,
}

fn usage(run: &std::path::Path, msg: impl Into<String>) -> Error {
    Error::Input(vec![Problem::new(run, msg)])
}

/// Loads the run, refuses a non-loopback address without a token, and binds.
pub async fn bind(o: Options) -> Result<Server, Error> {
    if !o.addr.ip().is_loopback() && o.token.is_none() {
        return Err(usage(
            &o.run,
            format!(
                "--addr {} is not a loopback address: set --token so that only \
                 reviewers with the token can read and decide",
                o.addr
            ),
        ));
    }
    if o.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(usage(&o.run, "--token is empty"));
    }
    let reviewer = o.reviewer.trim().to_string();
    if reviewer.is_empty() {
        return Err(usage(&o.run, "--reviewer is empty"));
    }
    if !o.run.join(crate::sink::DATA_DIR).is_dir() {
        return Err(usage(&o.run, "not a mediflow run directory (no data/)"));
    }
    let items = items::queue(items::load(&o.run, o.include_rejects, o.seed)?);
    if items.is_empty() {
        return Err(usage(&o.run, "the run has no records to review"));
    }
    let mut mine = HashMap::new();
    for d in journal::read(&o.run)? {
        if d.reviewer == reviewer {
            mine.insert(d.id.clone(), d);
        }
    }
    let schemas = edit::run_schemas(&o.run).map_err(|e| format!("{e:#}"));
    if let Err(why) = &schemas {
        if items.iter().any(|i| i.record.output_format == "json") {
            tracing::warn!("edits of JSON answers will be refused: {why}");
        }
    }
    let app = App {
        index: items
            .iter()
            .enumerate()
            .map(|(k, i)| (i.record.id.clone(), k))
            .collect(),
        items,
        reviewer,
        schemas,
        journal: Mutex::new(Journal::open(&o.run)?),
        mine: Mutex::new(mine),
        token: o.token.clone(),
    };
    let n = app.items.len();
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/items", get(list))
        .route("/api/decisions", post(decide))
        .with_state(std::sync::Arc::new(app));
    let listener = tokio::net::TcpListener::bind(o.addr)
        .await
        .map_err(|e| Error::io(format!("binding {}", o.addr), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound address", e))?;
    let url = match &o.token {
        Some(t) => format!("http://{addr}/?token={}", query_escape(t)),
        None => format!("http://{addr}/"),
    };
    Ok(Server {
        listener,
        router,
        url,
        items: n,
    })
}

/// Percent-encodes all but the unreserved characters of a URL.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Server {
    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| Error::io("serving the review app", e))
    }
}

type Shared = State<std::sync::Arc<App>>;

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

/// `None` when the request may go on; the 401 otherwise.
fn unauthorized(app: &App, headers: &HeaderMap) -> Option<Response> {
    let want = app.token.as_ref()?;
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compared in full whatever the first difference (no early exit to time).
    let same = got.is_some_and(|g| {
        g.len() == want.len() && g.bytes().zip(want.bytes()).fold(0, |a, (x, y)| a | (x ^ y)) == 0
    });
    (!same).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (header Authorization: Bearer TOKEN; open the URL \
             `mediflow review` printed, with its ?token=)",
        )
    })
}

fn item_json(it: &Item, decision: Option<&Decision>) -> Value {
    let r = &it.record;
    json!({
        "id": r.id,
        "task_type": r.task_type,
        "input_data": r.input_data,
        "output_format": r.output_format,
        "difficulty_level": r.difficulty_level,
        "document_family": r.document_family,
        "instruction": r.instruction,
        "input": r.input,
        "output": r.output,
        "judge_scores": it.judge_scores(),
        "judge_rationale": r.judge_rationale,
        "reject": it.reject,
        "decision": decision,
    })
}

async fn list(State(app): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&app, &headers) {
        return r;
    }
    let mine = app.mine.lock().expect("not poisoned");
    // This reviewer's unreviewed records first, each part in queue order.
    let (todo, done): (Vec<&Item>, Vec<&Item>) = app
        .items
        .iter()
        .partition(|i| !mine.contains_key(&i.record.id));
    let items: Vec<Value> = todo
        .iter()
        .chain(&done)
        .map(|i| item_json(i, mine.get(&i.record.id)))
        .collect();
    Json(json!({
        "reviewer": app.reviewer,
        "dimensions": DIMENSIONS,
        "total": items.len(),
        "reviewed": done.len(),
        "items": items,
    }))
    .into_response()
}

/// A decision as posted, checked; `Err((status, message))` otherwise.
fn parse(app: &App, body: &[u8]) -> Result<Decision, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    let Value::Object(o) = v else {
        return Err(bad("the body is not a JSON object".into()));
    };
    const KEYS: [&str; 5] = ["id", "decision", "scores", "edit", "comment"];
    if let Some(k) = o.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown field {k:?} (expected {})",
            KEYS.join(", ")
        )));
    }
    let id = o
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no \"id\"".into()))?;
    let Some(&k) = app.index.get(id) else {
        return Err(bad(format!("unknown record id {id:?}")));
    };
    let verdict: Verdict = o
        .get("decision")
        .and_then(|d| serde_json::from_value(d.clone()).ok())
        .ok_or_else(|| {
            bad(format!(
                "\"decision\" must be \"accept\", \"edit\" or \"reject\", not {}",
                o.get("decision").unwrap_or(&Value::Null)
            ))
        })?;
    let scores = scores(o.get("scores")).map_err(bad)?;
    let comment = match o.get("comment") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(bad(format!("\"comment\" must be a string, not {other}"))),
    };
    let edit = match o.get("edit") {
        None | Some(Value::Null) => Edit::default(),
        Some(e) => parse_edit(e).map_err(bad)?,
    };
    let rec = &app.items[k].record;
    let edit = edit::changed(rec, edit);
    let unprocessable = |m: String| (StatusCode::UNPROCESSABLE_ENTITY, m);
    match verdict {
        Verdict::Edit if edit.is_empty() => {
            return Err(unprocessable(
                "an edit decision needs a changed instruction, input or output".into(),
            ))
        }
        Verdict::Edit => {
            if let (Err(why), Some(_), "json") =
                (&app.schemas, &edit.output, rec.output_format.as_str())
            {
                return Err(unprocessable(format!(
                    "cannot validate the edited JSON output: {why}"
                )));
            }
            edit::apply(rec, &edit, app.schemas.as_ref().ok()).map_err(unprocessable)?;
        }
        _ if !edit.is_empty() => {
            return Err(bad(
                "changed fields need \"decision\": \"edit\" (accept and reject take none)".into(),
            ))
        }
        _ => {}
    }
    Ok(Decision {
        id: id.to_string(),
        reviewer: app.reviewer.clone(),
        decision: verdict,
        scores,
        edit,
        comment,
        at: journal::now(),
    })
}

fn scores(v: Option<&Value>) -> Result<BTreeMap<String, u8>, String> {
    let o = match v {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o,
        Some(other) => return Err(format!("\"scores\" must be an object, not {other}")),
    };
    let mut out = BTreeMap::new();
    for (dim, s) in o {
        if !DIMENSIONS.contains(&dim.as_str()) {
            return Err(format!(
                "unknown dimension {dim:?} (expected {})",
                DIMENSIONS.join(", ")
            ));
        }
        match s.as_u64() {
            Some(n @ 1..=5) => out.insert(dim.clone(), n as u8),
            _ => {
                return Err(format!(
                    "score {dim} must be an integer from 1 to 5, not {s}"
                ))
            }
        };
    }
    Ok(out)
}

fn parse_edit(v: &Value) -> Result<Edit, String> {
    let Value::Object(o) = v else {
        return Err(format!("\"edit\" must be an object, not {v}"));
    };
    let field = |o: &Map<String, Value>, k: &str| match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("edit.{k} must be a string, not {other}")),
    };
    if let Some(k) = o
        .keys()
        .find(|k| !["instruction", "input", "output"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown edit field {k:?} (instruction, input, output)"
        ));
    }
    Ok(Edit {
        instruction: field(o, "instruction")?,
        input: field(o, "input")?,
        output: field(o, "output")?,
    })
}

async fn decide(State(app): Shared, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = unauthorized(&app, &headers) {
        return r;
    }
    let d = match parse(&app, &body) {
        Ok(d) => d,
        Err((status, msg)) => return error(status, msg),
    };
    // On disk (fsynced) before the answer; the lock keeps lines and `mine` in order.
    let mut mine = app.mine.lock().expect("not poisoned");
    if let Err(e) = app.journal.lock().expect("not poisoned").append(&d) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
    }
    mine.insert(d.id.clone(), d.clone());
    let reviewed = app
        .items
        .iter()
        .filter(|i| mine.contains_key(&i.record.id))
        .count();
    Json(json!({ "decision": d, "reviewed": reviewed, "total": app.items.len() })).into_response()
}
