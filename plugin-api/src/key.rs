//! What a key may be made of: the original server's `[-\w.:]+`, one rule for the server,
//! the clients and every plugin.

/// Whether `b` may stand in a key: an ASCII letter or digit, or one of `- _ . :`.
#[inline]
pub const fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
}

/// Whether `key` is a whole, valid key.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(is_key_byte)
}

/// `text` made fit to stand in a key: every character a key cannot hold becomes `_`.
pub fn key_safe(text: &str) -> String {
    let mut key = String::with_capacity(text.len());
    push_key_safe(&mut key, text);
    key
}

/// Appends `text` made fit to stand in a key to `key` (no allocation beyond its growth: for
/// receivers that build many keys in one buffer).
pub fn push_key_safe(key: &mut String, text: &str) {
    if is_valid_key(text) {
        key.push_str(text);
        return;
    }
    key.extend(text.chars().map(|c| match u8::try_from(c) {
        Ok(b) if is_key_byte(b) => c,
        _ => '_',
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_servers_rule() {
        for good in ["web1.load", "a", "web:1.rps", "x-y_z.0", "UPPER.lower"] {
            assert!(is_valid_key(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", "a\n", "a*", "a,b"] {
            assert!(!is_valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn unsafe_characters_become_underscores() {
        assert_eq!(key_safe("10.0.0.1:11211"), "10.0.0.1:11211");
        assert_eq!(key_safe("http://x/y z"), "http:__x_y_z");
        assert_eq!(key_safe("café"), "caf_");
        assert!(is_valid_key(&key_safe("any thing/at all")));
    }
}
