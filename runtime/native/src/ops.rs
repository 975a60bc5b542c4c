//! Operations on a header list, with the rules of the SDK's `abi/ops.ts` (which the
//! JavaScript side applies to the same list): `set` drops every entry of the name and
//! appends the new one at the end, `append` adds one entry at the end, `remove` drops
//! every entry of the name. Names are lower-case in the list; lookups ignore case.
//!
//! Each change returns what undoes it, so a call that fails can be taken back without
//! copying the list beforehand.

use crate::wire::HeaderList;

/// How to take one change back.
#[derive(Debug)]
pub enum Undo {
    /// One entry was pushed at the end.
    Pushed,
    /// Entries were removed, each with the index it had.
    Removed(Vec<(usize, (String, String))>),
}

/// Drops every entry named `name` (lower-case). `None` when there was none.
pub fn remove(list: &mut HeaderList, name: &str) -> Option<Undo> {
    let mut removed = Vec::new();
    let mut kept = 0;
    for read in 0..list.len() {
        if list[read].0 == name {
            removed.push((read, std::mem::take(&mut list[read])));
        } else {
            list.swap(kept, read);
            kept += 1;
        }
    }
    list.truncate(kept);
    (!removed.is_empty()).then_some(Undo::Removed(removed))
}

pub fn push(list: &mut HeaderList, name: String, value: String) -> Undo {
    list.push((name, value));
    Undo::Pushed
}

pub fn undo(list: &mut HeaderList, change: Undo) {
    match change {
        Undo::Pushed => {
            list.pop();
        }
        // Ascending: every entry before an index is back in place when it is reinserted.
        Undo::Removed(entries) => {
            for (at, entry) in entries {
                list.insert(at, entry);
            }
        }
    }
}

/// The first value of `name`, case-insensitively.
pub fn get<'a>(list: &'a HeaderList, name: &str) -> Option<&'a str> {
    list.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Every value of `name`, in order, case-insensitively.
pub fn get_all(list: &HeaderList, name: &str) -> Vec<String> {
    list.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).collect()
}

/// Lower-cases the names of a list that came from outside, in place.
pub fn lower_names(list: &mut HeaderList) {
    for (name, _) in list.iter_mut() {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            name.make_ascii_lowercase();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> HeaderList {
        vec![("x".into(), "1".into()), ("y".into(), "2".into()), ("x".into(), "3".into()), ("z".into(), "4".into())]
    }

    fn pairs(l: &HeaderList) -> Vec<(&str, &str)> {
        l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    #[test]
    fn remove_drops_every_entry_and_undo_restores_order() {
        let mut l = list();
        let u = remove(&mut l, "x").expect("two removed");
        assert_eq!(pairs(&l), [("y", "2"), ("z", "4")]);
        undo(&mut l, u);
        assert_eq!(l, list());
        assert!(remove(&mut l, "absent").is_none());
        assert_eq!(l, list());
    }

    #[test]
    fn push_and_undo() {
        let mut l = list();
        let u = push(&mut l, "w".into(), "5".into());
        assert_eq!(l.last().unwrap(), &("w".to_string(), "5".to_string()));
        undo(&mut l, u);
        assert_eq!(l, list());
    }

    #[test]
    fn lookups_ignore_case() {
        let l = list();
        assert_eq!(get(&l, "X"), Some("1"));
        assert_eq!(get_all(&l, "x"), ["1", "3"]);
        assert_eq!(get(&l, "nope"), None);
        let mut m = vec![("Content-Type".to_string(), "a".to_string())];
        lower_names(&mut m);
        assert_eq!(m[0].0, "content-type");
    }
}
