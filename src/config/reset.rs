//! Where a reset moves a consumer group's offsets (`offsets reset --to`,
//! `KAFKA_RESET_OFFSETS_ON_START`): parsed and shown here, applied by `crate::groups`.

/// Where a reset moves offsets to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTo {
    /// The partition's first offset.
    Earliest,
    /// The partition's end.
    Latest,
    /// The first offset whose timestamp is at or after this (ms since the epoch).
    Time(i64),
    /// This offset (bounded by the partition's first offset and its end).
    Offset(i64),
}

impl ResetTo {
    /// Parses `earliest`, `latest`, an RFC 3339 time or an offset.
    pub fn parse(text: &str) -> Result<ResetTo, String> {
        let text = text.trim();
        match text {
            "earliest" => Ok(ResetTo::Earliest),
            "latest" => Ok(ResetTo::Latest),
            _ => {
                if let Ok(offset) = text.parse::<i64>() {
                    return if offset >= 0 {
                        Ok(ResetTo::Offset(offset))
                    } else {
                        Err("an offset is 0 or more".into())
                    };
                }
                let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| "expected earliest, latest, an RFC 3339 time or an offset".to_string())?;
                i64::try_from(time.unix_timestamp_nanos() / 1_000_000)
                    .map(ResetTo::Time)
                    .map_err(|_| "time out of range".to_string())
            }
        }
    }
}

impl std::fmt::Display for ResetTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResetTo::Earliest => f.write_str("earliest"),
            ResetTo::Latest => f.write_str("latest"),
            ResetTo::Offset(offset) => write!(f, "{offset}"),
            ResetTo::Time(ms) => {
                let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*ms) * 1_000_000)
                    .map_err(|_| std::fmt::Error)?;
                let text = time
                    .format(&time::format_description::well_known::Rfc3339)
                    .map_err(|_| std::fmt::Error)?;
                f.write_str(&text)
            }
        }
    }
}
