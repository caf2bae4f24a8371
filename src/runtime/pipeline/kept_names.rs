//! A parked connection's client-given names (SNI, sticky tag, VPC endpoint id), held inline
//! in one buffer while it waits. Parked connections live in one table; a name left in a small
//! allocation of its own would sit where the connection's task was and keep that memory
//! resident.

/// Bytes held inline for the three names together: a usual SNI (up to ~45 bytes) with a VPC
/// endpoint id (22) fits; longer ones take one allocation.
const INLINE: usize = 68;
/// The length byte of an absent name.
const ABSENT: u8 = u8::MAX;

/// The names as parked.
pub enum KeptNames {
    /// Each name's length (or [`ABSENT`]), the names one after another.
    Inline { lens: [u8; 3], bytes: [u8; INLINE] },
    /// Too long together to be held inline (rare).
    Boxed(Box<[Option<Box<str>>; 3]>),
}

impl KeptNames {
    pub fn new(names: [Option<Box<str>>; 3]) -> Self {
        let total: usize = names.iter().flatten().map(|n| n.len()).sum();
        if total > INLINE {
            return KeptNames::Boxed(Box::new(names));
        }
        let (mut lens, mut bytes, mut at) = ([ABSENT; 3], [0u8; INLINE], 0);
        for (name, len) in names.iter().zip(&mut lens) {
            if let Some(name) = name {
                // Each fits in a byte below ABSENT: together they fit in INLINE.
                *len = name.len() as u8;
                bytes[at..at + name.len()].copy_from_slice(name.as_bytes());
                at += name.len();
            }
        }
        KeptNames::Inline { lens, bytes }
    }

    /// The names as they were given.
    pub fn restore(self) -> [Option<Box<str>>; 3] {
        let (lens, bytes) = match self {
            KeptNames::Boxed(names) => return *names,
            KeptNames::Inline { lens, bytes } => (lens, bytes),
        };
        let mut at = 0;
        lens.map(|len| {
            if len == ABSENT {
                return None;
            }
            let end = at + usize::from(len);
            let name = bytes.get(at..end).and_then(|b| std::str::from_utf8(b).ok());
            at = end;
            name.map(Box::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_back_as_they_went_in() {
        let long = "x".repeat(INLINE + 1);
        let some = |s: &str| Some(Box::<str>::from(s));
        let cases: Vec<[Option<Box<str>>; 3]> = vec![
            [None, None, None],
            [some(""), None, some("")],
            [
                some("chi-demo-cluster-0-0.ch.example.com"),
                some("tag7"),
                some("vpce-0123456789abcdef0"),
            ],
            [some(&long[..INLINE]), None, None],
            [None, some(&long[..INLINE / 2]), some(&long[..INLINE / 2])],
            [some(&long), None, None],
            [some(&long[..40]), some("é日本"), some(&long[..30])],
        ];
        for names in cases {
            let total: usize = names.iter().flatten().map(|n| n.len()).sum();
            let kept = KeptNames::new(names.clone());
            assert_eq!(
                matches!(kept, KeptNames::Inline { .. }),
                total <= INLINE,
                "{names:?}"
            );
            assert_eq!(kept.restore(), names);
        }
    }

    #[test]
    fn three_names_in_less_room_than_two_words_more_than_the_buffer() {
        assert!(std::mem::size_of::<KeptNames>() <= INLINE + 8);
    }
}
