//! Lines of text escaped for JSON once per distinct line, not once per
//! finding: 40,000 findings repeat a few thousand lines (evidence, fixes,
//! names), and escaping was a third of the time spent serializing them.
//! Only inside `with_cache` (the report's JSON workers, which serialize with
//! serde_json); everywhere else a line is an ordinary string.

use super::finding::Line;
use crate::model::FastMap;
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::value::RawValue;
use std::cell::RefCell;

/// By the line's address; the line itself is kept, so no other line can
/// take that address while the cache lives.
type Cache = FastMap<usize, (Line, Box<RawValue>)>;

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// Run `f` with this thread's cache on; it is dropped when `f` returns.
pub fn with_cache<R>(f: impl FnOnce() -> R) -> R {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            CACHE.with(|c| c.replace(None));
        }
    }
    CACHE.with(|c| c.replace(Some(Cache::default())));
    let _off = Off;
    f()
}

/// For `#[serde(serialize_with)]`.
pub fn line<S: Serializer>(l: &Line, s: S) -> Result<S::Ok, S::Error> {
    if !s.is_human_readable() {
        return s.serialize_str(l);
    }
    CACHE.with(|c| {
        let Ok(mut cache) = c.try_borrow_mut() else {
            return s.serialize_str(l);
        };
        let Some(cache) = cache.as_mut() else {
            return s.serialize_str(l);
        };
        let key = std::sync::Arc::as_ptr(l).cast::<u8>() as usize;
        let (_, raw) = match cache.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let raw =
                    serde_json::value::to_raw_value(&**l).map_err(serde::ser::Error::custom)?;
                e.insert((l.clone(), raw))
            }
        };
        raw.serialize(s)
    })
}

/// For `#[serde(serialize_with)]` on a list of lines.
pub fn lines<S: Serializer>(ls: &[Line], s: S) -> Result<S::Ok, S::Error> {
    struct One<'a>(&'a Line);
    impl Serialize for One<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            line(self.0, s)
        }
    }
    let mut seq = s.serialize_seq(Some(ls.len()))?;
    for l in ls {
        seq.serialize_element(&One(l))?;
    }
    seq.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Two<'a> {
        #[serde(serialize_with = "line")]
        a: &'a Line,
        #[serde(serialize_with = "lines")]
        b: &'a [Line],
    }

    #[test]
    fn cached_or_not_the_json_is_the_same() {
        let tricky: Line = "quote \" backslash \\ newline \n tab \t bell \u{7} é".into();
        let plain: Line = "plain".into();
        let lines = vec![tricky.clone(), plain.clone(), tricky.clone()];
        let v = Two {
            a: &tricky,
            b: &lines,
        };
        let direct = serde_json::to_string(&v).unwrap();
        let cached = with_cache(|| serde_json::to_string(&v).unwrap());
        let twice = with_cache(|| {
            let _ = serde_json::to_string(&v).unwrap();
            serde_json::to_string(&v).unwrap()
        });
        assert_eq!(cached, direct);
        assert_eq!(twice, direct);
        let value: serde_json::Value = with_cache(|| serde_json::to_value(&v).unwrap());
        assert_eq!(value["a"], serde_json::json!(&*tricky));
        // The cache is gone after with_cache.
        assert!(CACHE.with(|c| c.borrow().is_none()));
    }
}
