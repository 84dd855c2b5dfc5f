//! The `map` command's loop: JSON Lines in, one output line per input line, in input order.
//!
//! Large inputs are cut into blocks of whole lines; the blocks are mapped on every core at once
//! and written in their input order, so the output is exactly what one thread would write. The
//! buffers go round (reader → worker → writer → reader), so a run allocates them once.

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
    let threads = threads.max(1);
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

/// Cuts the input into blocks of whole lines and hands them to the workers.
fn read_blocks(
    input: &mut impl BufRead,
    to_work: &SyncSender<Block>,
    recycled: &Receiver<Block>,
) -> io::Result<()> {
    let mut next_line = 0;
    for seq in 0.. {
        let mut block = recycled.try_recv().unwrap_or_else(|_| Block {
            seq: 0,
            first_line: 0,
            input: Vec::with_capacity(BLOCK + (64 << 10)),
            output: Vec::with_capacity(2 * BLOCK),
        });
        block.seq = seq;
        block.first_line = next_line;
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
            return Ok(());
        }
        next_line += bytecount(&block.input);
        if !block.input.ends_with(b"\n") {
            next_line += 1;
        }
        if to_work.send(block).is_err() {
            return Ok(()); // the writer stopped (e.g. a closed pipe): it reports why
        }
    }
    Ok(())
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
        block.output.clear();
        let Block {
            first_line,
            input,
            output,
            ..
        } = &mut block;
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
        if to_write.send(block).is_err() {
            return;
        }
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
