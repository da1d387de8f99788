//! Grounding checks (placeholder: to be written).
