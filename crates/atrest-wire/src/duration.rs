//! ISO-8601 durations as rotation policies use them (`P90D`, `P1Y2M`, `PT48H`).

/// Seconds in an ISO-8601 duration `PnYnMnWnDTnHnMnS` (a year is 365 days, a month 30;
/// units in that order, each at most once, at least one); `None` for anything else,
/// including a total that does not fit in an `i64`.
#[must_use]
pub fn seconds(s: &str) -> Option<i64> {
    let rest = s.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, t),
        Some(_) => return None,
        None => (rest, ""),
    };
    let mut total: i64 = 0;
    let mut any = false;
    for (part, units) in [
        (date, &[('Y', 365 * 86_400), ('M', 30 * 86_400), ('W', 7 * 86_400), ('D', 86_400)][..]),
        (time, &[('H', 3600), ('M', 60), ('S', 1)][..]),
    ] {
        let mut num = String::new();
        let mut next = 0;
        for c in part.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let i = units.iter().skip(next).position(|(u, _)| *u == c)? + next;
            let n: i64 = num.parse().ok()?;
            total = total.checked_add(n.checked_mul(units[i].1)?)?;
            num.clear();
            next = i + 1;
            any = true;
        }
        if !num.is_empty() {
            return None;
        }
    }
    any.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn units_in_order_each_once() {
        assert_eq!(seconds("P90D"), Some(90 * 86_400));
        assert_eq!(seconds("P1Y2M"), Some(365 * 86_400 + 60 * 86_400));
        assert_eq!(seconds("PT48H"), Some(48 * 3600));
        assert_eq!(seconds("P1DT1M"), Some(86_400 + 60));
        for bad in ["", "P", "PT", "P1", "P1D1Y", "P1H", "90D", "P-1D", "P1DT", "P99999999999999999999D", "P1D2D"] {
            assert_eq!(seconds(bad), None, "{bad}");
        }
    }
}
