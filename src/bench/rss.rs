//! Peak resident memory of this process (`VmHWM`), resettable so that a phase measures only its
//! own peak. Linux only; elsewhere the figures are `None`.

/// Resets the peak to the current resident size (`/proc/self/clear_refs`, value 5). Returns
/// whether it could; when not, the next peak covers the whole run so far.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peak resident memory since the last reset, in MiB.
pub fn peak_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_peak_is_read_and_positive() {
        reset_peak();
        assert!(peak_mb().is_some_and(|mb| mb > 0.0));
    }
}
