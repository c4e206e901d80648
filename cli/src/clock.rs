//! Times as people read them: Unix milliseconds in the local time zone.

use std::ffi::{c_char, c_int, c_long};

/// `struct tm` as glibc and musl lay it out.
#[repr(C)]
struct Tm {
    tm_sec: c_int,
    tm_min: c_int,
    tm_hour: c_int,
    tm_mday: c_int,
    tm_mon: c_int,
    tm_year: c_int,
    tm_wday: c_int,
    tm_yday: c_int,
    tm_isdst: c_int,
    tm_gmtoff: c_long,
    tm_zone: *const c_char,
}

// `time_t` is a `long` for this symbol with glibc and musl on every Linux target.
unsafe extern "C" {
    fn tzset();
    fn localtime_r(time: *const c_long, result: *mut Tm) -> *mut Tm;
}

/// `2025-03-14 09:26:53`, in the local time zone (`TZ`, else `/etc/localtime`);
/// empty for 0, which the door phone's services use for "never".
pub fn local(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return String::new();
    }
    let seconds = c_long::try_from(unix_ms / 1000).unwrap_or(c_long::MAX);
    let mut tm = Tm {
        tm_sec: 0,
        tm_min: 0,
        tm_hour: 0,
        tm_mday: 0,
        tm_mon: 0,
        tm_year: 0,
        tm_wday: 0,
        tm_yday: 0,
        tm_isdst: 0,
        tm_gmtoff: 0,
        tm_zone: std::ptr::null(),
    };
    // SAFETY: both pointers are valid for the call; localtime_r writes only `tm`,
    // and tzset only reads the environment, which doorctl never changes.
    let converted = unsafe {
        tzset();
        !localtime_r(&seconds, &mut tm).is_null()
    };
    if !converted {
        return format!("@{}", unix_ms / 1000);
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_is_empty() {
        assert_eq!(local(0), "");
    }

    #[test]
    fn a_time_reads_as_a_date_and_a_time_of_day() {
        let text = local(1_741_944_413_123);
        assert_eq!(text.len(), "2025-03-14 09:26:53".len(), "{text}");
        // Every time zone is within a day of UTC.
        assert!(
            ["2025-03-13", "2025-03-14", "2025-03-15"].contains(&&text[..10]),
            "{text}"
        );
        assert!(text.ends_with(":53"), "{text}");
    }
}
