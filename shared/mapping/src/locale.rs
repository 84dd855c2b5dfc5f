//! `context.locale` → Amplitude `language` and a fallback `country` (spec §3.10).

use serde_json_borrow::Value;

use crate::json;

/// The English names a locale such as `en-US` stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocaleNames {
    pub language: &'static str,
    pub country: Option<&'static str>,
}

/// Reads `context.locale` (a string, or an object with a `language` string), e.g. `en-US`,
/// `en_us` or `{"language": "en-us"}`. Codes compare case-insensitively. When either code is
/// unknown there is no result at all, as in the classic integration.
pub fn names(locale: &Value<'_>) -> Option<LocaleNames> {
    let tag = match locale {
        Value::Str(s) => s.as_ref(),
        Value::Object(_) => json::get(locale, "language").as_str()?,
        _ => return None,
    };
    let mut parts = tag.split(['-', '_']);
    let lang = parts.next()?.to_ascii_lowercase();
    if lang.len() != 2 {
        return None;
    }
    let language = isolang::Language::from_639_1(&lang)?.to_name();
    let country = match parts.next() {
        None => None,
        Some(code) => Some(country_name(&code.to_ascii_uppercase())?),
    };
    Some(LocaleNames { language, country })
}

/// ISO 3166-1 English short name of an alpha-2 code.
///
/// Decision: the classic integration printed the common short names of the npm `country-list`
/// package of its time ("United States"); the ISO list carries the formal names ("United States
/// of America"). Where the two differ for a commonly used locale, the classic name is kept so
/// that Amplitude charts do not split one country across two spellings.
fn country_name(code: &str) -> Option<&'static str> {
    const CLASSIC_NAMES: [(&str, &str); 8] = [
        ("US", "United States"),
        ("GB", "United Kingdom"),
        ("KR", "South Korea"),
        ("KP", "North Korea"),
        ("RU", "Russia"),
        ("TW", "Taiwan"),
        ("VN", "Vietnam"),
        ("IR", "Iran"),
    ];
    if let Some((_, name)) = CLASSIC_NAMES.iter().find(|(c, _)| *c == code) {
        return Some(name);
    }
    rust_iso3166::from_alpha2(code).map(|c| c.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Option<LocaleNames> {
        names(&serde_json::from_str::<Value>(s).unwrap())
    }

    #[test]
    fn spec_3_10_language_and_country_names() {
        let en_us = Some(LocaleNames {
            language: "English",
            country: Some("United States"),
        });
        assert_eq!(parse(r#""en-US""#), en_us);
        assert_eq!(parse(r#""en_us""#), en_us);
        assert_eq!(parse(r#"{"language": "en-us"}"#), en_us);
        assert_eq!(
            parse(r#""de-DE-x-foo""#),
            Some(LocaleNames {
                language: "German",
                country: Some("Germany")
            })
        );
        assert_eq!(
            parse(r#""fr""#),
            Some(LocaleNames {
                language: "French",
                country: None
            })
        );
    }

    #[test]
    fn spec_3_10_unknown_codes_give_no_result() {
        assert_eq!(parse(r#""xx-US""#), None);
        assert_eq!(parse(r#""en-ZZ""#), None);
        assert_eq!(parse(r#""english""#), None);
        assert_eq!(parse("42"), None);
    }
}
