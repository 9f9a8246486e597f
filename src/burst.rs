//! Memory that a burst (thousands of locks or requests at once) left behind, given back.

use std::collections::VecDeque;

/// Gives back the memory of a queue that a burst left large, once it is empty again.
pub(crate) fn shrink_after_burst<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() > 1024 {
        queue.shrink_to(64);
    }
}
