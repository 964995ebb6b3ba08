//! Order keys for articles ("fractional indexing"): strings that sort in
//! document order, so that moving an article is one write of its key and two
//! people moving articles at once can never duplicate or lose one.
//!
//! Keys use the digits `0-9a-z` and never end in `0`, so there is always room
//! for a key before any other key.

const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const BASE: u8 = 36;

fn value(c: u8) -> u8 {
    DIGITS.iter().position(|d| *d == c).map_or(0, |p| p as u8)
}

/// A key strictly between `before` and `after` (`None` meaning the start or the
/// end of the list). If the two are equal or out of order (two concurrent moves
/// picked the same key), the result sorts after `before`.
pub fn between(before: Option<&str>, after: Option<&str>) -> String {
    let a: Vec<u8> = before.unwrap_or("").bytes().map(value).collect();
    let b: Option<Vec<u8>> = after.map(|s| s.bytes().map(value).collect());
    let b = b.filter(|b| a.is_empty() || b.as_slice() > a.as_slice());
    let mut out = Vec::new();
    let mut i = 0;
    if let Some(b) = &b {
        loop {
            let da = a.get(i).copied().unwrap_or(0);
            let db = b.get(i).copied().unwrap_or(0);
            if da == db {
                out.push(da);
                i += 1;
                continue;
            }
            // da < db here because a < b and they share the prefix so far.
            if db - da > 1 {
                out.push((da + db) / 2);
                return render(&out);
            }
            out.push(da);
            i += 1;
            break;
        }
    }
    // Now find a key greater than a[i..] with no upper bound.
    loop {
        let da = a.get(i).copied().unwrap_or(0);
        if da < BASE - 1 {
            out.push((da + BASE).div_ceil(2).max(da + 1));
            return render(&out);
        }
        out.push(da);
        i += 1;
    }
}

fn render(digits: &[u8]) -> String {
    digits.iter().map(|d| DIGITS[*d as usize] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_keys() {
        let k = between(None, None);
        assert!(!k.is_empty());
        let before = between(None, Some(&k));
        assert!(before < k);
        let after = between(Some(&k), None);
        assert!(after > k);
    }

    #[test]
    fn equal_neighbours_sort_after_before() {
        let k = between(Some("i"), Some("i"));
        assert!(k.as_str() > "i");
    }

    proptest! {
        #[test]
        fn always_strictly_between(picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..300)) {
            let mut keys: Vec<String> = vec![between(None, None)];
            for idx in picks {
                let i = idx.index(keys.len() + 1);
                let before = if i == 0 { None } else { Some(keys[i - 1].as_str()) };
                let after = keys.get(i).map(String::as_str);
                let k = between(before, after);
                if let Some(b) = before { prop_assert!(k.as_str() > b); }
                if let Some(a) = after { prop_assert!(k.as_str() < a); }
                prop_assert!(!k.ends_with('0'));
                keys.insert(i, k);
            }
        }
    }
}
