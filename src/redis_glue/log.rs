//! The module's lines in the Redis log. Text may carry user input (a
//! campaign name with a NUL byte, an error from the database): NUL bytes are
//! escaped here, as the logging call panics on them (a panic while logging
//! a panic aborts the server).

use redis_module::logging;

fn line(text: &str) -> String {
    format!("campaign: {}", text.replace('\0', "\\0"))
}

pub fn warning(text: impl AsRef<str>) {
    // Unit tests run code that logs without a Redis server to log to.
    if cfg!(test) {
        eprintln!("{}", line(text.as_ref()));
        return;
    }
    logging::log_warning(line(text.as_ref()));
}

pub fn notice(text: impl AsRef<str>) {
    if cfg!(test) {
        eprintln!("{}", line(text.as_ref()));
        return;
    }
    logging::log_notice(line(text.as_ref()));
}

#[cfg(test)]
mod tests {
    #[test]
    fn nul_bytes_are_escaped() {
        assert_eq!(super::line("evil\0name"), "campaign: evil\\0name");
    }
}
