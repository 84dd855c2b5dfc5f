//! The `map` command's loop: JSON Lines in, one output line per input line, in input order.
//!
//! Large inputs are cut into blocks of whole lines; the blocks are mapped on every core at once
//! and written in their input order, so the output is exactly what one thread would write. The
//! buffers go round (reader → worker → writer → reader), so a run allocates them once. On one
//! core the same blocks are read, mapped and written in turn on one thread.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use mapping::Settings;

use crate::output::{self, Keys};

/// Input is read in blocks of about this size, cut at a line end.
const BLOCK: usize = 1 << 20;

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
    mut input: impl BufRead + Send,
    mut out: impl Write + Send,
    threads: usize,
) -> io::Result<()> {
    if threads <= 1 {
        return run_here(settings, keys, input, out);
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
        let read = read_blocks(&mut input, &to_work, &recycled);
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
    mut input: impl BufRead,
    mut out: impl Write,
) -> io::Result<()> {
    let mut block = Block::new();
    let mut next_line = 0;
    for seq in 0.. {
        if !next_block(&mut input, &mut block, seq, &mut next_line)? {
            break;
        }
        map_block(settings, keys, &mut block);
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
    input: &mut impl BufRead,
    to_work: &SyncSender<Block>,
    recycled: &Receiver<Block>,
) -> io::Result<()> {
    let mut next_line = 0;
    for seq in 0.. {
        let mut block = recycled.try_recv().unwrap_or_else(|_| Block::new());
        if !next_block(input, &mut block, seq, &mut next_line)? {
            return Ok(());
        }
        if to_work.send(block).is_err() {
            return Ok(()); // the writer stopped (e.g. a closed pipe): it reports why
        }
    }
    Ok(())
}

/// Fills `block` with the next whole lines of the input (about [`BLOCK`] bytes); false at the
/// end of the input.
fn next_block(
    input: &mut impl BufRead,
    block: &mut Block,
    seq: u64,
    next_line: &mut usize,
) -> io::Result<bool> {
    block.seq = seq;
    block.first_line = *next_line;
    block.input.clear();
    // Whole lines, a buffer at a time: the input's buffer up to its last line end is copied
    // in one go (not line by line); a block ends at a line end.
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        if block.input.len() >= BLOCK {
            if !block.input.ends_with(b"\n") {
                input.read_until(b'\n', &mut block.input)?;
            }
            break;
        }
        let take = buf
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(buf.len(), |i| i + 1);
        block
            .input
            .extend_from_slice(buf.get(..take).unwrap_or_default());
        input.consume(take);
    }
    if block.input.is_empty() {
        return Ok(false);
    }
    *next_line += bytecount(&block.input);
    if !block.input.ends_with(b"\n") {
        *next_line += 1;
    }
    Ok(true)
}

fn bytecount(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
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
        map_block(settings, keys, &mut block);
        if to_write.send(block).is_err() {
            return;
        }
    }
}

/// Maps a block's lines into its output.
fn map_block(settings: &Settings, keys: &Keys, block: &mut Block) {
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
    };
    // The block checked as UTF-8 at once; only a block that is not is read line by line,
    // lossily.
    match std::str::from_utf8(input) {
        Ok(text) => text
            .split_inclusive('\n')
            .enumerate()
            .for_each(|(k, line)| map(k, line)),
        Err(_) => input
            .split_inclusive(|b| *b == b'\n')
            .enumerate()
            .for_each(|(k, raw)| map(k, &String::from_utf8_lossy(raw))),
    }
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
}
