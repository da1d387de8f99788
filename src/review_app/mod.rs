//! `mediflow review`: the physician review web app over a run (`server`, with the page
//! `page.html`), the stratified queue it serves (`items`), and how a reviewer's edit is
//! applied and re-validated against the task's JSON Schema (`edit`, also used by
//! `export`). Decisions go to the journal of `crate::review`.

pub mod edit;
pub mod items;
pub mod server;
