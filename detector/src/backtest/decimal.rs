//! Fast decimal text for the results files: exactly what `Display` writes for `f64`
//! (shortest round-trip digits, positional, never an exponent), several times faster.
//! Results files hold two floats per row, and `core::fmt` was a tenth of a backtest.

/// Appends `x` as `format!("{x}")` would write it.
pub fn push_f64(out: &mut Vec<u8>, x: f64) {
    if !x.is_finite() || (x.fract() == 0.0 && x.abs() >= 1e16) || may_tie(x) {
        use std::io::Write as _;
        let _ = write!(out, "{x}");
        return;
    }
    // Whole numbers are exact as i64 (`Display` writes `-0` for negative zero).
    if x.fract() == 0.0 {
        if x == 0.0 && x.is_sign_negative() {
            out.push(b'-');
        }
        out.extend_from_slice(itoa::Buffer::new().format(x as i64).as_bytes());
        return;
    }
    let mut buffer = zmij::Buffer::new();
    let text = buffer.format_finite(x).as_bytes();
    let Some(e) = text.iter().position(|&b| b == b'e') else {
        // zmij writes positional text for 1e-5 <= |x| < 1e16; for non-integers that is
        // `Display`'s text already.
        out.extend_from_slice(text);
        return;
    };
    // `[-]d[.ddd]e[-]k`: rewrite positionally.
    let (mantissa, exponent) = (&text[..e], &text[e + 1..]);
    let (negative, mantissa) = match mantissa.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, mantissa),
    };
    let exponent: i32 = std::str::from_utf8(exponent)
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(0);
    let digits: Vec<u8> = mantissa.iter().copied().filter(|&b| b != b'.').collect();
    if negative {
        out.push(b'-');
    }
    if exponent < 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-exponent - 1) as usize));
        out.extend_from_slice(&digits);
    } else {
        let whole = exponent as usize + 1;
        if digits.len() <= whole {
            out.extend_from_slice(&digits);
            out.extend(std::iter::repeat_n(b'0', whole - digits.len()));
        } else {
            out.extend_from_slice(&digits[..whole]);
            out.push(b'.');
            out.extend_from_slice(&digits[whole..]);
        }
    }
}

/// Whether `x` (finite, not whole) may lie exactly halfway between its two nearest
/// shortest decimals, where Ryū-style algorithms like zmij may round the other way from
/// `Display` (Ryū rounds such ties to even). That takes an exact decimal expansion barely
/// longer than the 17 digits a double needs: a value of few significant bits. `m 2^e` (odd `m`, `e < 0`) has the digits of `m 5^-e`; any with
/// up to 21 of them is left to `Display`. Typical values have over 30.
fn may_tie(x: f64) -> bool {
    let bits = x.to_bits();
    let exponent_bits = ((bits >> 52) & 0x7ff) as i64;
    let fraction = bits & ((1 << 52) - 1);
    let (mantissa, exponent) = if exponent_bits == 0 {
        (fraction, -1074)
    } else {
        (fraction | 1 << 52, exponent_bits - 1075)
    };
    if mantissa == 0 {
        return false;
    }
    let zeros = mantissa.trailing_zeros();
    let (mantissa, exponent) = (mantissa >> zeros, exponent + i64::from(zeros));
    let significant_bits = f64::from(64 - mantissa.leading_zeros());
    exponent < 0
        && significant_bits * std::f64::consts::LOG10_2
            + (-exponent) as f64 * std::f64::consts::LOG10_2 * (10f64.log2() - 1.0)
            <= 21.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(x: f64) -> String {
        let mut out = Vec::new();
        push_f64(&mut out, x);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn matches_display_on_edge_cases() {
        for x in [
            0.0,
            -0.0,
            1.0,
            -3.0,
            0.5,
            1e-5,
            1.5e-5,
            9.999e-6,
            1e-7,
            -2.5e-300,
            5e-324,
            1e15,
            1e16,
            1.2345678901234567e16,
            123456789012345680.0,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            0.1 + 0.2,
            1_204_994_737_751_483.2,
            1001.0 / 1_048_576.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert_eq!(text(x), format!("{x}"), "{x:e}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn matches_display(bits in any::<u64>()) {
            let x = f64::from_bits(bits);
            prop_assert_eq!(text(x), format!("{x}"));
        }

        #[test]
        fn matches_display_on_unit_scores(x in 0.0f64..=1.0) {
            prop_assert_eq!(text(x), format!("{x}"));
        }
    }
}
