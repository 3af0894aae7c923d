//! The text of a join token: `HEX(payload).HEX(tag)`, the payload being
//! `NAMESPACE/SERVICE-ACCOUNT/EXPIRY/ROOT-SHA256`. The controller signs and
//! checks the tag (the key is its own); a workload only reads the root pin,
//! to know its controller before it has a trust bundle.

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// A token from its payload and tag.
pub fn join(payload: &[u8], tag: &[u8]) -> String {
    format!("{}.{}", hex(payload), hex(tag))
}

/// A token's payload and tag, if it is shaped like one.
pub fn split(token: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let (payload, tag) = token.split_once('.')?;
    Some((unhex(payload)?, unhex(tag)?))
}

/// The root SHA-256 a token pins; tokens from older controllers have none.
pub fn root_pin(token: &str) -> Option<String> {
    let (payload, _) = split(token)?;
    let text = String::from_utf8(payload).ok()?;
    let pin = text.split('/').nth(3)?;
    (pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit())).then(|| pin.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_carry_their_pin() {
        let pin = "ab".repeat(32);
        let t = join(format!("shop/checkout/123/{pin}").as_bytes(), &[1, 2, 255]);
        assert_eq!(split(&t).unwrap().1, vec![1, 2, 255]);
        assert_eq!(root_pin(&t), Some(pin));
        assert_eq!(root_pin(&join(b"shop/checkout/123", &[1])), None, "an old token has no pin");
        assert_eq!(unhex("abc"), None);
    }
}
