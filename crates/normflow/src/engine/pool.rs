//! Recycled `f32` buffers: each thread keeps the buffers it freed, by capacity, and hands them
//! out again, so that the repeated passes of training reuse memory instead of calling the
//! allocator (a training step allocates nothing once the first steps have filled the store).
//!
//! [`super::Matrix`] returns its buffer here when dropped; other hot paths take and give
//! buffers explicitly. A store is bounded in bytes and in buffers per capacity; what does not
//! fit is freed normally.

use std::cell::RefCell;

use super::Matrix;

/// Most bytes a thread keeps cached: enough for the activations one thread of an image flow's
/// training step holds (Glow with 256 hidden channels on MNIST keeps about 1.1 GB per thread at
/// batch 256; with 512 MB, half of it went back to the system every step and came back as
/// freshly zeroed pages, 5% of the step). Cached buffers are ones a step has already needed,
/// so keeping them does not raise the peak.
const MAX_CACHED_BYTES: usize = 2 << 30;
/// Most buffers of one capacity a thread keeps cached.
const MAX_PER_CAPACITY: usize = 256;

/// One thread's cached buffers, grouped by capacity (buckets sorted by capacity, found by
/// binary search: an image flow's step uses hundreds of distinct sizes, and a linear scan of
/// them took 2% of it).
struct Store {
    buckets: Vec<(usize, Vec<Vec<f32>>)>,
    bytes: usize,
}

/// Most empty matrix lists a thread keeps cached.
const MAX_LISTS: usize = 256;

thread_local! {
    static STORE: RefCell<Store> = const { RefCell::new(Store { buckets: Vec::new(), bytes: 0 }) };
    static LISTS: RefCell<Vec<Vec<Matrix>>> = const { RefCell::new(Vec::new()) };
}

/// An empty list of matrices (a layer cache's), reusing a returned list's memory.
pub(crate) fn matrix_list() -> Vec<Matrix> {
    LISTS.try_with(|l| l.try_borrow_mut().ok().and_then(|mut l| l.pop())).ok().flatten().unwrap_or_default()
}

/// Returns a list of matrices (dropping its matrices, whose buffers return to the store).
pub(crate) fn give_matrix_list(mut list: Vec<Matrix>) {
    list.clear();
    if list.capacity() == 0 {
        return;
    }
    let _ = LISTS.try_with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            if l.len() < MAX_LISTS {
                l.push(list);
            }
        }
    });
}

/// A buffer of `len` zeros.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    filled(len, 0.0)
}

/// A buffer of `len` copies of `value`.
pub(crate) fn filled(len: usize, value: f32) -> Vec<f32> {
    match cached(len) {
        Some(mut v) => {
            v.clear();
            v.resize(len, value);
            v
        }
        None => vec![value; len],
    }
}

/// A buffer holding a copy of `src`.
pub(crate) fn copied(src: &[f32]) -> Vec<f32> {
    match cached(src.len()) {
        Some(mut v) => {
            v.clear();
            v.extend_from_slice(src);
            v
        }
        None => src.to_vec(),
    }
}

/// An empty buffer with capacity for exactly `len` values, from the store when it has one.
pub(crate) fn with_capacity(len: usize) -> Vec<f32> {
    match cached(len) {
        Some(mut v) => {
            v.clear();
            v
        }
        None => Vec::with_capacity(len),
    }
}

/// A buffer of `len` values whose contents are unspecified (a recycled buffer keeps its old
/// values; a new one is zeros): for outputs that are about to be overwritten in full, such as
/// a matrix product's, so that no pass is spent initialising them.
pub(crate) fn scratch(len: usize) -> Vec<f32> {
    match cached(len) {
        Some(mut v) => {
            v.resize(len, 0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// Returns a buffer to this thread's store (or frees it when the store is full).
pub(crate) fn give(v: Vec<f32>) {
    let cap = v.capacity();
    if cap == 0 {
        return;
    }
    // During thread teardown the store may be gone; then the buffer is simply freed.
    let _ = STORE.try_with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else { return };
        if s.bytes + cap * 4 > MAX_CACHED_BYTES {
            return;
        }
        let idx = match s.buckets.binary_search_by_key(&cap, |b| b.0) {
            Ok(i) => i,
            Err(i) => {
                s.buckets.insert(i, (cap, Vec::new()));
                i
            }
        };
        if s.buckets[idx].1.len() < MAX_PER_CAPACITY {
            // Kept with its values: `scratch` hands them out as they are; the other getters
            // clear them.
            s.buckets[idx].1.push(v);
            s.bytes += cap * 4;
        }
    });
}

/// Frees every buffer this thread has cached when together they hold more than `max_bytes`.
///
/// For long-lived threads whose work changes shape from call to call, such as a server's
/// compute thread: the store keeps buffers by exact capacity, so every new block size adds
/// buffers that a later block of another size cannot use, and the store grows towards its cap.
/// Trimming bounds it; the freed memory stays in the allocator for the next block.
pub fn trim_thread_cache(max_bytes: usize) {
    let _ = STORE.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if s.bytes > max_bytes {
                s.buckets.clear();
                s.bytes = 0;
            }
        }
    });
}

/// Bytes this thread's store holds now.
pub fn thread_cache_bytes() -> usize {
    STORE.try_with(|s| s.try_borrow().map_or(0, |s| s.bytes)).unwrap_or(0)
}

/// A cached buffer of capacity `len` (holding whatever it held when given back), if the store
/// has one.
fn cached(len: usize) -> Option<Vec<f32>> {
    if len == 0 {
        return None;
    }
    STORE
        .try_with(|s| {
            let mut s = s.try_borrow_mut().ok()?;
            let i = s.buckets.binary_search_by_key(&len, |b| b.0).ok()?;
            let v = s.buckets[i].1.pop()?;
            s.bytes -= len * 4;
            Some(v)
        })
        .ok()
        .flatten()
}

/// A scratch `Vec<f32>` whose memory returns to the store when dropped (like a [`Matrix`]'s).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Buf(Vec<f32>);

impl Clone for Buf {
    fn clone(&self) -> Self {
        Self(copied(&self.0))
    }
}

impl Buf {
    /// `len` zeros.
    pub(crate) fn zeroed(len: usize) -> Self {
        Self(zeroed(len))
    }

    /// An empty buffer with room for `len` values.
    pub(crate) fn with_capacity(len: usize) -> Self {
        Self(with_capacity(len))
    }
}

impl std::ops::Deref for Buf {
    type Target = Vec<f32>;
    fn deref(&self) -> &Vec<f32> {
        &self.0
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut Vec<f32> {
        &mut self.0
    }
}

/// `f32` values in one 64-byte cache line.
const LINE: usize = 16;

/// A scratch buffer of `len` values whose first value starts a 64-byte cache line, back to the
/// store when dropped. The image convolutions keep their groups in these: with channel rows a
/// multiple of 16 values long, no 16-lane load of any row straddles two lines (on the
/// narrow-channel products such split loads cost a fifth to a third of the rate).
#[derive(Debug)]
pub(crate) struct LineBuf {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

impl LineBuf {
    /// `len` values whose contents are unspecified, as [`scratch`]'s.
    pub(crate) fn scratch(len: usize) -> Self {
        let buf = scratch(len + LINE - 1);
        // `align_offset` may decline (usize::MAX); the buffer is then merely unaligned.
        let start = buf.as_ptr().align_offset(LINE * 4).min(LINE - 1);
        Self { buf, start, len }
    }

    /// A line-aligned copy of `src`.
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn copied(src: &[f32]) -> Self {
        let mut b = Self::scratch(src.len());
        b.copy_from_slice(src);
        b
    }
}

impl std::ops::Deref for LineBuf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for LineBuf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

impl Drop for LineBuf {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn a_line_buffer_starts_a_cache_line_and_holds_its_length() {
        for len in [1, 15, 16, 1000, 4099] {
            let mut b = LineBuf::scratch(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % 64, 0, "{len}");
            b.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
            assert_eq!(LineBuf::copied(&b)[..], b[..]);
        }
    }
}

#[cfg(test)]
mod trim_tests {
    use super::*;

    #[test]
    fn trimming_empties_a_store_above_the_limit_only() {
        // Runs on its own thread: the store is per thread.
        std::thread::spawn(|| {
            give(vec![0.0; 1000]);
            give(vec![0.0; 2000]);
            assert_eq!(thread_cache_bytes(), 12_000);
            trim_thread_cache(12_000);
            assert_eq!(thread_cache_bytes(), 12_000);
            trim_thread_cache(11_999);
            assert_eq!(thread_cache_bytes(), 0);
            assert!(cached(1000).is_none());
        })
        .join()
        .unwrap();
    }
}

impl FromIterator<f32> for Buf {
    fn from_iter<I: IntoIterator<Item = f32>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut b = Self::with_capacity(iter.size_hint().0);
        b.extend(iter);
        b
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_comes_back_cleared_and_refilled() {
        let v = copied(&[1.0, 2.0, 3.0]);
        let ptr = v.as_ptr();
        give(v);
        let w = zeroed(3);
        assert_eq!(w, vec![0.0; 3]);
        assert_eq!(w.as_ptr(), ptr, "the freed buffer is reused");
        give(w);
        let c = copied(&[4.0, 5.0, 6.0]);
        assert_eq!(c, vec![4.0, 5.0, 6.0]);
        assert_eq!(c.as_ptr(), ptr);
        let f = filled(4, 1.5);
        assert_eq!(f, vec![1.5; 4]);
        assert_ne!(f.as_ptr(), ptr, "another capacity is a fresh buffer");
        give(c);
        let w = with_capacity(3);
        assert!(w.is_empty() && w.as_ptr() == ptr);
        give(w);
        let s = scratch(3);
        assert_eq!((s.len(), s.as_ptr()), (3, ptr), "scratch reuses the buffer at full length");
        assert_eq!(scratch(5), vec![0.0; 5], "a new scratch buffer is zeros");
    }
}
