//! The `map` command's loop: JSON Lines in, one output line per input line, in input order.
//!
//! Large inputs are cut into blocks of whole lines; the blocks are mapped on every core at once
//! and written in their input order, so the output is exactly what one thread would write. The
//! buffers go round (reader → worker → writer → reader), so a run allocates them once. On one
//! core the same blocks are read, mapped and written in turn on one thread.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use mapping::Settings;

use crate::output::{self, Keys};

/// Input is read in blocks of about this size, cut at a line end.
const BLOCK: usize = 1 << 20;

/// On one core, a block's output is written whenever this much of it is ready, not only at the
/// block's end: half the 1 MB pipe `map` asks for (`main.rs`), so while whoever reads the
/// output keeps up, each write finds room and returns at once. A block's whole output (a
/// quarter larger than its input on corpus events) never fits: every block's write waited for
/// the reader to drain the pipe, and the process sat idle (BENCHMARKS.md).
const WRITE_AT: usize = BLOCK / 2;

/// A block of whole input lines and where it starts.
struct Block {
    seq: u64,
    /// The 0-based number of its first line.
    first_line: usize,
    input: Vec<u8>,
    output: Vec<u8>,
}

/// Maps every line of `input` to `out`, on `threads` worker threads.
pub fn run(
    settings: &Settings,
    keys: &Keys,
    input: impl Read + Send,
    mut out: impl Write + Send,
    threads: usize,
) -> io::Result<()> {
    let mut blocks = Blocks::new(input);
    if threads <= 1 {
        return run_here(settings, keys, &mut blocks, out);
    }
    let (to_work, work) = sync_channel::<Block>(threads * 2);
    let (to_write, written) = sync_channel::<Block>(threads * 2);
    let (recycle, recycled) = sync_channel::<Block>(threads * 4);
    let work = Arc::new(Mutex::new(work));
    thread::scope(|scope| {
        for _ in 0..threads {
            let (work, to_write) = (work.clone(), to_write.clone());
            scope.spawn(move || worker(settings, keys, &work, &to_write));
        }
        // Only the workers hold the work queue and the write queue: when they stop (the writer
        // failed, e.g. on a closed pipe), the reader's next send fails and it stops too.
        drop((work, to_write));
        let writer = scope.spawn(move || write_in_order(written, &mut out, &recycle));
        let read = read_blocks(&mut blocks, &to_work, &recycled);
        drop(to_work);
        let wrote = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("writer failed")));
        read.and(wrote)
    })
}

/// One core (`taskset -c 0`, or a one-CPU container): read, map and write each block in turn
/// on this thread. Handing blocks between threads that can only take turns on the one core
/// costs time and does nothing.
fn run_here(
    settings: &Settings,
    keys: &Keys,
    blocks: &mut Blocks<impl Read>,
    mut out: impl Write,
) -> io::Result<()> {
    let mut block = Block::new();
    while blocks.fill(&mut block)? {
        map_block(settings, keys, &mut block, |output| {
            if output.len() >= WRITE_AT {
                out.write_all(output)?;
                output.clear();
            }
            Ok(())
        })?;
        out.write_all(&block.output)?;
    }
    out.flush()
}

impl Block {
    fn new() -> Self {
        Block {
            seq: 0,
            first_line: 0,
            input: Vec::with_capacity(BLOCK + (64 << 10)),
            output: Vec::with_capacity(2 * BLOCK),
        }
    }
}

/// Cuts the input into blocks of whole lines and hands them to the workers.
fn read_blocks(
    blocks: &mut Blocks<impl Read>,
    to_work: &SyncSender<Block>,
    recycled: &Receiver<Block>,
) -> io::Result<()> {
    loop {
        let mut block = recycled.try_recv().unwrap_or_else(|_| Block::new());
        if !blocks.fill(&mut block)? {
            return Ok(());
        }
        if to_work.send(block).is_err() {
            return Ok(()); // the writer stopped (e.g. a closed pipe): it reports why
        }
    }
}

/// The input as blocks of whole lines, read straight into each block's buffer (not copied
/// through a reader's buffer): the part of a line after a block's last line end is carried
/// to the start of the next block.
struct Blocks<R> {
    input: R,
    carry: Vec<u8>,
    at_end: bool,
    seq: u64,
    /// The 0-based number of the next block's first line.
    next_line: usize,
}

impl<R: Read> Blocks<R> {
    fn new(input: R) -> Self {
        Blocks {
            input,
            carry: Vec::new(),
            at_end: false,
            seq: 0,
            next_line: 0,
        }
    }

    /// Fills `block` with the next whole lines (about [`BLOCK`] bytes, more for a longer
    /// line; the last line of the input may lack its end); false when none are left.
    fn fill(&mut self, block: &mut Block) -> io::Result<bool> {
        block.input.clear();
        block.input.append(&mut self.carry);
        let mut want = BLOCK;
        // What is before this holds no line end (only a line longer than a block gets here
        // twice): each byte is searched once, however long the line.
        let mut searched = 0;
        while !self.at_end {
            if block.input.len() < want {
                let missing = want - block.input.len();
                block.input.reserve(missing);
                let read = (&mut self.input)
                    .take(missing as u64)
                    .read_to_end(&mut block.input)?;
                self.at_end = read < missing;
                continue;
            }
            let fresh = block.input.get(searched..).unwrap_or_default();
            match memchr::memrchr(b'\n', fresh) {
                Some(at) => {
                    let end = searched + at + 1;
                    self.carry
                        .extend_from_slice(block.input.get(end..).unwrap_or_default());
                    block.input.truncate(end);
                    break;
                }
                // One line longer than a block: read on until it ends.
                None => {
                    searched = block.input.len();
                    want += BLOCK;
                }
            }
        }
        if block.input.is_empty() {
            return Ok(false);
        }
        block.seq = self.seq;
        block.first_line = self.next_line;
        self.seq += 1;
        self.next_line += memchr::memchr_iter(b'\n', &block.input).count();
        Ok(true)
    }
}

/// Maps blocks until the reader is done.
fn worker(
    settings: &Settings,
    keys: &Keys,
    work: &Mutex<Receiver<Block>>,
    to_write: &SyncSender<Block>,
) {
    loop {
        let next = work.lock().map(|w| w.recv());
        let Ok(Ok(mut block)) = next else {
            return;
        };
        let mapped = map_block(settings, keys, &mut block, |_| Ok(()));
        if mapped.is_err() || to_write.send(block).is_err() {
            return;
        }
    }
}

/// Maps a block's lines into its output, handing the output to `after_line` after each line
/// (which may write it out and clear it).
fn map_block(
    settings: &Settings,
    keys: &Keys,
    block: &mut Block,
    mut after_line: impl FnMut(&mut Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    block.output.clear();
    let Block {
        first_line,
        input,
        output,
        ..
    } = block;
    let mut map = |k: usize, line: &str| {
        let line = line.trim_end_matches(['\n', '\r']);
        if !line.trim().is_empty() {
            output::write_line(*first_line + k, line, settings, keys, output);
        }
        after_line(output)
    };
    // The block checked as UTF-8 at once; only a block that is not is read line by line,
    // lossily.
    match std::str::from_utf8(input) {
        Ok(text) => line_ranges(input)
            .enumerate()
            .try_for_each(|(k, line)| map(k, text.get(line).unwrap_or_default())),
        Err(_) => line_ranges(input).enumerate().try_for_each(|(k, line)| {
            map(
                k,
                &String::from_utf8_lossy(input.get(line).unwrap_or_default()),
            )
        }),
    }
}

/// Where the lines of `bytes` are, each with its `\n` (the last one may lack it). A `\n` is
/// never part of a longer UTF-8 sequence, so the lines of valid text are valid text.
fn line_ranges(bytes: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    memchr::memchr_iter(b'\n', bytes)
        .map(|end| end + 1)
        .chain(std::iter::once(bytes.len()))
        .filter_map(move |end| {
            let line = start..end;
            start = end;
            (!line.is_empty()).then_some(line)
        })
}

/// Writes blocks in input order, and sends their buffers back to the reader.
fn write_in_order(
    written: Receiver<Block>,
    out: &mut impl Write,
    recycle: &SyncSender<Block>,
) -> io::Result<()> {
    let mut waiting: BTreeMap<u64, Block> = BTreeMap::new();
    let mut next = 0;
    for block in written {
        waiting.insert(block.seq, block);
        while let Some(block) = waiting.remove(&next) {
            out.write_all(&block.output)?;
            next += 1;
            let _ = recycle.try_send(block);
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One thread and many write the same bytes: every line, in input order, blank lines
    /// skipped but counted, a last line without its end mapped.
    #[test]
    fn one_thread_and_many_write_the_same_output() {
        let settings = Settings::from_json(&serde_json::json!({"apiKey": "K"})).unwrap();
        let keys = Keys::from_settings(&serde_json::json!({"apiKey": "K"})).unwrap();
        let mut input = String::new();
        for i in 0..30_000 {
            input.push_str(&format!(
                "{{\"type\":\"track\",\"event\":\"e{i}\",\"userId\":\"user-{i}\"}}\n"
            ));
            if i % 1000 == 0 {
                input.push('\n');
            }
        }
        input.push_str("not json");
        let out = |threads| {
            let mut out = Vec::new();
            run(&settings, &keys, input.as_bytes(), &mut out, threads).unwrap();
            out
        };
        let one = out(1);
        assert_eq!(one, out(4));
        assert_eq!(one.iter().filter(|b| **b == b'\n').count(), 30_001);
        assert!(one.ends_with(b"\"index\":30030,\"requests\":[],\"error\":{\"kind\":\"invalid\",\"message\":\"the line is not valid JSON (expected ident at line 1 column 2)\"}}\n"));
    }

    /// On one core the output leaves in writes of about half a block (`WRITE_AT`), each less
    /// than the pipe's megabyte, never as a block's whole output, which is larger.
    #[test]
    fn one_core_writes_pieces_that_fit_the_pipe() {
        struct Writes(Vec<usize>);
        impl Write for Writes {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                self.0.push(bytes.len());
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let settings = Settings::from_json(&serde_json::json!({"apiKey": "K"})).unwrap();
        let keys = Keys::from_settings(&serde_json::json!({"apiKey": "K"})).unwrap();
        let input: String = (0..30_000)
            .map(|i| format!("{{\"type\":\"track\",\"event\":\"e{i}\",\"userId\":\"u{i}\"}}\n"))
            .collect();
        let mut writes = Writes(Vec::new());
        run(&settings, &keys, input.as_bytes(), &mut writes, 1).unwrap();
        // A line's output is about 250 bytes here.
        assert!(
            writes.0.iter().all(|n| *n < WRITE_AT + 1_000),
            "{:?}",
            writes.0
        );
        assert!(writes.0.iter().sum::<usize>() > 6 * BLOCK);
        assert!(writes.0.len() >= 12, "{:?}", writes.0);
    }

    /// Blocks are cut only at line ends, whatever the lines: a line longer than two blocks
    /// with more than a block of lines after it, CRLF ends, a line that is not UTF-8, blank
    /// lines. Every thread count writes what mapping the lines one by one writes.
    #[test]
    fn blocks_cut_only_at_line_ends() {
        let settings = Settings::from_json(&serde_json::json!({"apiKey": "K"})).unwrap();
        let keys = Keys::from_settings(&serde_json::json!({"apiKey": "K"})).unwrap();
        let mut input: Vec<u8> = Vec::new();
        let note = "n".repeat(300);
        for i in 0..9_000 {
            let pad = if i == 4_000 {
                "p".repeat(2 * BLOCK + 17)
            } else {
                String::new()
            };
            input.extend_from_slice(
                format!("{{\"type\":\"track\",\"event\":\"e{i}{pad}\",\"userId\":\"user-{i}\",\"properties\":{{\"note\":\"{note}\"}}}}")
                    .as_bytes(),
            );
            input.extend_from_slice(if i % 3 == 0 { b"\r\n" } else { b"\n" });
            if i == 6_000 {
                input.extend_from_slice(b"{\"type\":\"track\",\"event\":\"\xff\"}\n\n");
            }
        }
        let mut expected = Vec::new();
        for (k, raw) in input.split(|b| *b == b'\n').enumerate() {
            let line = String::from_utf8_lossy(raw);
            let line = line.trim_end_matches('\r');
            if !line.trim().is_empty() {
                output::write_line(k, line, &settings, &keys, &mut expected);
            }
        }
        assert_eq!(expected.iter().filter(|b| **b == b'\n').count(), 9_001);
        for threads in [1, 2, 5] {
            let mut out = Vec::new();
            run(&settings, &keys, input.as_slice(), &mut out, threads).unwrap();
            assert!(out == expected, "{threads} threads");
        }
    }
}
