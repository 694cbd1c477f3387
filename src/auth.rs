//! Secret comparison that leaks neither the content nor the length of any secret.

use std::hint::black_box;

/// True when `candidate` equals one of `secrets`. Every secret is compared and every
/// comparison walks the whole candidate, so the time taken depends only on the
/// candidate's length (which the caller already knows) and the number of secrets.
pub fn matches_any<S: AsRef<[u8]>>(candidate: &[u8], secrets: &[S]) -> bool {
    let mut any = 0u8;
    for secret in secrets {
        any |= u8::from(ct_eq(candidate, secret.as_ref()));
    }
    any == 1
}

fn ct_eq(candidate: &[u8], secret: &[u8]) -> bool {
    if secret.is_empty() {
        return false;
    }
    // Fold the length difference in first, then compare byte by byte, cycling through
    // the secret so that a short secret is not revealed by an early end.
    let mut diff = u64::from(candidate.len() != secret.len());
    for (c, s) in candidate.iter().zip(secret.iter().cycle()) {
        diff |= u64::from(black_box(c ^ s));
    }
    black_box(diff) == 0 && !candidate.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_against_every_secret() {
        let secrets = vec![b"old-secret".to_vec(), b"new-secret".to_vec()];
        assert!(matches_any(b"old-secret", &secrets));
        assert!(matches_any(b"new-secret", &secrets));
        assert!(!matches_any(b"new-secre", &secrets));
        assert!(!matches_any(b"new-secrett", &secrets));
        assert!(!matches_any(b"", &secrets));
        assert!(!matches_any(b"new-secretnew-secret", &secrets));
        assert!(!matches_any::<Vec<u8>>(b"x", &[]));
    }
}
