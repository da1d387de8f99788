//! Coherence a reader checks at a glance: a message is not written to its own sender
//! ("From: Dr. Lee" ... "Dear Dr. Lee,"), and dates and clock times exist (no 2/31/2024,
//! no 13:56 PM). Small teachers get both wrong often; no real document does.

use super::{Filter, FilterCtx, Prepared, Verdict};
use crate::quality::vocab;
use regex::Regex;
use std::sync::LazyLock;

/// A header's sender, up to a comma, a parenthesis, a wide gap or the next header field.
static FROM: LazyLock<Regex> = LazyLock::new(|| {
    vocab::regex(r"(?mi)^\s*from\s*:\s*([^,(\n]+?)\s*(?:[,(]|\s{2,}|\s+(?:to|sent|date)\s*:|$)")
        .expect("valid regex")
});
/// Who a message is to: its `To:` field or its salutation.
static TO: LazyLock<Regex> = LazyLock::new(|| {
    vocab::regex(
        r"(?mi)(?:\bto\s*:\s*([^,(\n]+?)\s*(?:[,(]|\s{2,}|\s+(?:from|sent|date|cc)\s*:|$)|^\s*(?:dear|hi|hello)\s+([^,\n]+?)\s*[,:\n])",
    )
    .expect("valid regex")
});
static DATE: LazyLock<Regex> =
    LazyLock::new(|| vocab::regex(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b").expect("valid regex"));
static CLOCK: LazyLock<Regex> = LazyLock::new(|| {
    vocab::regex(r"(?i)\b(\d{1,2}):(\d{2})\s*([ap])\.?m\b\.?").expect("valid regex")
});

fn days_in(month: u32, year: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A date no reading makes real: neither month/day/year nor day/month/year.
pub(crate) fn impossible_date(text: &str) -> Option<&str> {
    DATE.captures_iter(text).find_map(|c| {
        let n = |i: usize| c[i].parse::<u32>().unwrap_or(0);
        let (a, b, y) = (n(1), n(2), n(3));
        let real = |m: u32, d: u32| (1..=12).contains(&m) && d >= 1 && d <= days_in(m, y);
        (!real(a, b) && !real(b, a)).then(|| c.get(0).unwrap().as_str())
    })
}

/// A 12-hour clock time that cannot be (13:56 PM, 0:30 AM, 9:75 am).
fn impossible_clock(text: &str) -> Option<&str> {
    CLOCK.captures_iter(text).find_map(|c| {
        let (h, m) = (
            c[1].parse::<u32>().unwrap_or(0),
            c[2].parse::<u32>().unwrap_or(0),
        );
        (h == 0 || h > 12 || m >= 60).then(|| c.get(0).unwrap().as_str())
    })
}

static AGE: LazyLock<Regex> = LazyLock::new(|| {
    vocab::regex(r"(?i)\b(\d{1,3})[- ](?:year|yr)s?[- ]old\b").expect("valid regex")
});
static DOB: LazyLock<Regex> = LazyLock::new(|| {
    vocab::regex(r"(?i)\b(?:DOB|date of birth|born)\s*:?\s*(?:on\s+)?\d{1,2}/\d{1,2}/(\d{4})\b")
        .expect("valid regex")
});
static YEAR_4: LazyLock<Regex> =
    LazyLock::new(|| vocab::regex(r"\b\d{1,2}/\d{1,2}/(\d{4})\b").expect("valid regex"));

/// A stated age that the date of birth and the document's latest date make impossible
/// (more than a year apart): "a 65-year-old ... DOB 2/15/2023 ... Sent: 24/07/2023".
fn age_contradicts_dob(doc: &str) -> Option<String> {
    let dob = DOB.captures(doc)?;
    let born: u32 = dob[1].parse().ok()?;
    let at = dob.get(1)?.start();
    // The latest other date is when the document was written.
    let now: u32 = YEAR_4
        .captures_iter(doc)
        .filter(|c| c.get(1).is_some_and(|m| m.start() != at))
        .filter_map(|c| c[1].parse().ok())
        .max()?;
    let age: u32 = AGE.captures(doc)?[1].parse().ok()?;
    let implied = now.checked_sub(born)?;
    (implied.abs_diff(age) > 1)
        .then(|| format!("a {age}-year-old born in {born} would be {implied} in {now}"))
}

fn person(s: &str) -> String {
    vocab::words(s).join(" ")
}

/// The sender of a message when it is also whom the message is to: the first `From:`
/// against the `To:` of its own line and against the first salutation (a reply further
/// down legitimately swaps the two).
fn self_addressed(doc: &str) -> Option<String> {
    let from = FROM.captures(doc)?;
    let sender = person(&from[1]);
    let at = from.get(0)?.start();
    let line_end = doc[at..].find('\n').map_or(doc.len(), |i| i + at);
    let line_start = doc[..at].rfind('\n').map_or(0, |i| i + 1);
    let same_line = TO
        .captures_iter(&doc[line_start..line_end])
        .filter_map(|c| c.get(1))
        .map(|m| person(m.as_str()));
    let salutation = TO
        .captures_iter(doc)
        .find_map(|c| c.get(2))
        .map(|m| person(m.as_str()));
    let mut to = same_line.chain(salutation);
    (!sender.is_empty() && to.any(|t| t == sender)).then_some(sender)
}

pub(crate) struct Coherence;
impl Filter for Coherence {
    fn name(&self) -> &'static str {
        "coherence"
    }
    fn check(&self, p: &Prepared, _cx: &FilterCtx) -> Verdict {
        if let Some(who) = self_addressed(&p.rec.input) {
            let d = format!("the document is from {who:?} and addressed to {who:?}");
            return Verdict::Drop("sender_is_recipient", d);
        }
        if let Some(d) = age_contradicts_dob(&p.rec.input) {
            return Verdict::Drop("age_contradicts_dob", format!("document: {d}"));
        }
        for (part, text) in p.parts() {
            if let Some(bad) = impossible_date(text).or_else(|| impossible_clock(text)) {
                let d = format!("{part}: {bad:?} is no real date or time");
                return Verdict::Drop("impossible_date_time", d);
            }
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_to_its_own_sender() {
        let doc = "Subject: Dizziness\nFrom: Dr. Lee, MD, FACS   Sent: 23/07/2022 14:56\nDear Dr. Lee,\nI am writing";
        assert_eq!(self_addressed(doc).as_deref(), Some("dr lee"));
        let doc = "From: Dr. Tom Becker, Cardiology    To: Dr. Tom Becker, Radiology";
        assert_eq!(self_addressed(doc).as_deref(), Some("dr tom becker"));
        let ok =
            "From: Frank Miller (DOB 03/02/1961)    Sent: 05/14/2024\nDear Dr. Ortiz,\nI started";
        assert_eq!(self_addressed(ok), None);
        let ok = "From: Dr. Priya Shah, Hospital Medicine    To: Dr. Tom Becker, Cardiology";
        assert_eq!(self_addressed(ok), None);
        assert_eq!(self_addressed("Dear Dr. Lee,\nNo sender header."), None);
        let thread = "From: Dr. Shah    To: Dr. Becker\nMessage: advice?\nFrom: Dr. Becker    To: Dr. Shah\nReply: yes";
        assert_eq!(self_addressed(thread), None);
    }

    #[test]
    fn an_age_the_date_of_birth_rules_out() {
        let doc = "From: Olivia Nguyen (DOB 2/15/2023)    Sent: 24/07/2023 19:26\nI am a 65-year-old woman";
        assert!(age_contradicts_dob(doc).is_some());
        let ok = "Patient: Ann Roe, DOB 03/02/1961, seen 05/14/2024. 63-year-old woman with";
        assert_eq!(age_contradicts_dob(ok), None);
        assert_eq!(
            age_contradicts_dob("A 65-year-old woman seen 05/14/2024."),
            None
        );
        assert_eq!(
            age_contradicts_dob("DOB: 04/11/1956. A 67-year-old man."),
            None
        );
    }

    #[test]
    fn dates_and_times_that_cannot_be() {
        assert_eq!(impossible_date("seen 2/31/2024 19:57"), Some("2/31/2024"));
        assert_eq!(impossible_date("on 13/13/2024"), Some("13/13/2024"));
        assert_eq!(
            impossible_date("on 24/09/2017 and 12/31/2024, 2/29/2024"),
            None
        );
        assert_eq!(impossible_date("2/29/2023"), Some("2/29/2023"));
        assert_eq!(impossible_date("BP 134/82, 1/2 tablet"), None);
        assert_eq!(impossible_clock("Sent: 13:56 PM"), Some("13:56 PM"));
        assert_eq!(impossible_clock("at 9:75 am"), Some("9:75 am"));
        assert_eq!(
            impossible_clock("at 12:05 PM, 7:30 a.m., 14:56, dilution 1:10"),
            None
        );
    }
}
