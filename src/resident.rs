//! What roadie keeps in memory while it supervises: after the boot, the code and heap pages it
//! touched (argument parsing, logging set-up, later the database stages) are released, so the
//! supervisor's resident set is what supervision itself uses. Only clean file-backed pages are
//! dropped, which the kernel maps again from the page cache if they are ever needed.

use std::fs;

/// Releases boot-only memory. Best effort: any failure leaves memory as it was.
pub fn release_boot_memory() {
    release_clean_code();
    // Last, after the buffers above are freed. SAFETY: malloc_trim only returns free heap
    // pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn release_clean_code() {
    let Ok(exe) = fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    if let Some(stack) = stack_of(&smaps) {
        release_stack_below_here(stack);
    }
    for (start, end) in clean_mappings_of(&smaps, &exe.to_string_lossy()) {
        // SAFETY: the range is a private, read-only mapping of our executable that holds no
        // written (anonymous) page: dropping its PTEs loses nothing, the next access faults the
        // same bytes back in from the page cache.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// The main thread's stack mapping, from /proc/self/smaps.
fn stack_of(smaps: &str) -> Option<(usize, usize)> {
    let line = smaps.lines().find(|l| l.ends_with("[stack]"))?;
    let (start, end) = line.split_whitespace().next()?.split_once('-')?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    ))
}

/// The boot's deep call chains (argument parsing above all) touched stack pages the supervisor
/// never uses again: drop those well below the current frame. A later touch gets a zero page,
/// as an untouched stack page would.
#[inline(never)]
fn release_stack_below_here((start, end): (usize, usize)) {
    // Room for the frames this function and madvise(2) still need, and the red zone.
    const MARGIN: usize = 8 * 1024;
    let here = std::ptr::addr_of!(start) as usize;
    if !(start..end).contains(&here) {
        return; // not on the main thread's stack
    }
    let page = 4096;
    let top = (here.saturating_sub(MARGIN)) & !(page - 1);
    if top > start {
        // SAFETY: [start, top) lies below every live frame of this (the only) thread, with a
        // margin for the calls made from here; MADV_DONTNEED on private anonymous memory only
        // drops pages nobody reads.
        unsafe {
            libc::madvise(start as *mut libc::c_void, top - start, libc::MADV_DONTNEED);
        }
    }
}

/// Read-only mappings of `exe` with no anonymous (copied-on-write) page, from /proc/self/smaps.
fn clean_mappings_of(smaps: &str, exe: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            let perms = fields.next().unwrap_or_default();
            let path = fields.nth(3).unwrap_or_default();
            let read_only = perms.starts_with('r') && perms.as_bytes().get(1) == Some(&b'-');
            current = (read_only && path == exe).then_some((start, end));
        } else if first == "Anonymous:"
            && let Some(range) = current.take()
            && fields.next() == Some("0")
        {
            found.push(range);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
00400000-00500000 r--p 00000000 fe:01 42 /bin/roadie
Rss:                 320 kB
Anonymous:             0 kB
00500000-00700000 r-xp 00100000 fe:01 42 /bin/roadie
Rss:                1552 kB
Anonymous:             0 kB
00700000-00710000 r--p 00300000 fe:01 42 /bin/roadie
Anonymous:            44 kB
00710000-00720000 rw-p 00310000 fe:01 42 /bin/roadie
Anonymous:            16 kB
00800000-00900000 r-xp 00000000 fe:01 43 /lib/other.so
Anonymous:             0 kB
";

    #[test]
    fn finds_the_stack() {
        let smaps = "7ffd0000-7ffd2000 rw-p 00000000 00:00 0 [stack]\nRss: 8 kB\n";
        assert_eq!(stack_of(smaps), Some((0x7ffd0000, 0x7ffd2000)));
        assert_eq!(stack_of(SMAPS), None);
    }

    #[test]
    fn only_clean_read_only_mappings_of_the_executable_are_released() {
        assert_eq!(
            clean_mappings_of(SMAPS, "/bin/roadie"),
            [(0x400000, 0x500000), (0x500000, 0x700000)]
        );
    }
}
