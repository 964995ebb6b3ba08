//! An article's body cut into pieces for the page: which passages threads
//! point at (marked, and numbered after the passage so the link does not
//! rest on colour alone).

/// A piece of an article's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The text.
    pub text: String,
    /// The numbers of the threads whose passage covers it (none: plain text).
    pub marked_by: Vec<usize>,
    /// The numbers of the threads whose passage ends right after it.
    pub ends: Vec<usize>,
}

/// Cuts `body` at the edges of `passages` (`(start, end, number)`, in
/// characters, end exclusive; ranges outside the body are clipped).
pub fn pieces(body: &str, passages: &[(usize, usize, usize)]) -> Vec<Piece> {
    let chars: Vec<char> = body.chars().collect();
    let len = chars.len();
    let clipped: Vec<(usize, usize, usize)> = passages
        .iter()
        .map(|&(s, e, n)| (s.min(len), e.min(len), n))
        .filter(|(s, e, _)| s < e)
        .collect();
    let mut cuts: Vec<usize> = vec![0, len];
    for (s, e, _) in &clipped {
        cuts.push(*s);
        cuts.push(*e);
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| {
            let (from, to) = (w[0], w[1]);
            let mut marked_by: Vec<usize> = clipped
                .iter()
                .filter(|(s, e, _)| *s <= from && to <= *e)
                .map(|(_, _, n)| *n)
                .collect();
            marked_by.sort_unstable();
            let mut ends: Vec<usize> = clipped
                .iter()
                .filter(|(_, e, _)| *e == to)
                .map(|(_, _, n)| *n)
                .collect();
            ends.sort_unstable();
            Piece {
                text: chars[from..to].iter().collect(),
                marked_by,
                ends,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(p: &[Piece]) -> String {
        p.iter().map(|p| p.text.as_str()).collect()
    }

    #[test]
    fn plain_text_is_one_piece() {
        let p = pieces("Geen reacties.", &[]);
        assert_eq!(p.len(), 1);
        assert!(p[0].marked_by.is_empty());
        assert_eq!(joined(&p), "Geen reacties.");
    }

    #[test]
    fn overlapping_passages_are_cut_at_every_edge() {
        let body = "De gemeente plant bomen.";
        let p = pieces(body, &[(3, 11, 1), (7, 17, 2)]);
        assert_eq!(joined(&p), body);
        let marked: Vec<(&str, Vec<usize>)> = p
            .iter()
            .map(|p| (p.text.as_str(), p.marked_by.clone()))
            .collect();
        assert_eq!(
            marked,
            vec![
                ("De ", vec![]),
                ("geme", vec![1]),
                ("ente", vec![1, 2]),
                (" plant", vec![2]),
                (" bomen.", vec![]),
            ]
        );
        assert_eq!(p[2].ends, vec![1]);
        assert_eq!(p[3].ends, vec![2]);
    }

    #[test]
    fn passages_count_characters_and_are_clipped() {
        let p = pieces("één boom", &[(0, 3, 1), (5, 99, 2), (7, 7, 3)]);
        assert_eq!(p[0].text, "één");
        assert_eq!(p[0].marked_by, vec![1]);
        assert_eq!(p.last().unwrap().text, "oom");
        assert_eq!(joined(&p), "één boom");
    }
}
