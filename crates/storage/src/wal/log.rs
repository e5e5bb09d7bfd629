//! The rule by which entries build a group's log, shared by the writer (to refuse a
//! bad append up front), recovery and inspection (to detect a log that breaks it).

use keel_raft::Index;

/// Checks that an entry with `index` may follow a log whose last index is `last`:
/// `index ≤ last` overwrites from `index` on (Raft log truncation), `last + 1`
/// appends, anything further leaves a gap. Index 0 is "before the log" and never an
/// entry.
pub(crate) fn check_next(last: Index, index: Index) -> Result<(), String> {
    if index == 0 {
        return Err("entry with index 0".to_string());
    }
    if index > last.saturating_add(1) {
        return Err(format!(
            "entry index {index} leaves a gap after last index {last}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrite_append_and_gap() {
        assert!(check_next(0, 1).is_ok());
        assert!(check_next(5, 6).is_ok());
        assert!(check_next(5, 5).is_ok());
        assert!(check_next(5, 1).is_ok());
        assert!(check_next(5, 7).is_err());
        assert!(check_next(0, 2).is_err());
        assert!(check_next(5, 0).is_err());
    }
}
