//! Which incarnation of the topic the broker holds: its topic id (KIP-516), a UUID the broker
//! gives a topic when it is created. A topic deleted and created again under the same name (or
//! lost with a broker's storage, as tansu's memory storage is on a restart) gets a new id, and its
//! offsets start again from 0: every position kept from before (a checkpoint, a committed offset,
//! a consumer's resume point) is then meaningless, and trusting it would skip the new records
//! below it. The consumers and the probe compare ids to tell.
//!
//! The rdkafka crate does not wrap the Admin API's `DescribeTopics`, which is librdkafka's only
//! way to read a topic id; this module calls it through `rdkafka::bindings`, with every object
//! it allocates released by a guard.

use std::ffi::{CStr, CString, c_char};
use std::fmt;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};

/// A topic's id, as the broker reports it (never the all-zero UUID, which means "none").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TopicId(pub u128);

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl TopicId {
    /// The id written by [`fmt::Display`] (32 hex digits), e.g. read back from commit metadata.
    pub fn parse(text: &str) -> Option<TopicId> {
        if text.len() != 32 {
            return None;
        }
        u128::from_str_radix(text, 16)
            .ok()
            .filter(|id| *id != 0)
            .map(TopicId)
    }
}

/// What the broker said of the topic's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Described {
    /// The topic exists with this id.
    Id(TopicId),
    /// The broker answered without an id for it: the topic does not exist, or the broker does
    /// not report ids.
    NoId,
}

/// Asks the broker, through `client`'s connections, for `topic`'s id, waiting at most `timeout`.
/// An error when no answer came.
pub fn describe<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Described, String> {
    let name = CString::new(topic).map_err(|_| "topic name holds a NUL byte".to_owned())?;
    let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    let rk = client.native_ptr();
    // SAFETY: `rk` is a live client for the duration of this call (borrowed from `client`);
    // every object created here is owned by one guard below and destroyed exactly once, after
    // the last use of anything borrowed from it; the names array outlives the call that copies it.
    unsafe {
        let mut names = [name.as_ptr()];
        let topics = Owned::new(
            rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1),
            rd::rd_kafka_TopicCollection_destroy,
        );
        let options = Owned::new(
            rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            ),
            rd::rd_kafka_AdminOptions_destroy,
        );
        let mut errstr = [0 as c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options.0,
            millis,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let queue = Owned::new(rd::rd_kafka_queue_new(rk), rd::rd_kafka_queue_destroy);
        rd::rd_kafka_DescribeTopics(rk, topics.0, options.0, queue.0);
        // A little beyond the request's own timeout, after which librdkafka answers with an error.
        let event = Owned::new(
            rd::rd_kafka_queue_poll(queue.0, millis.saturating_add(1000)),
            rd::rd_kafka_event_destroy,
        );
        if event.0.is_null() {
            return Err(format!("no answer within {timeout:?}"));
        }
        let code = rd::rd_kafka_event_error(event.0);
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(text(rd::rd_kafka_event_error_string(event.0)));
        }
        let result = rd::rd_kafka_event_DescribeTopics_result(event.0);
        let mut count = 0usize;
        let described = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        // One topic asked, so one described.
        if count == 0 {
            return Ok(Described::NoId);
        }
        let description = *described;
        let error = rd::rd_kafka_TopicDescription_error(description);
        if !error.is_null()
            && rd::rd_kafka_error_code(error) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            return Ok(Described::NoId);
        }
        let uuid = rd::rd_kafka_TopicDescription_topic_id(description);
        if uuid.is_null() {
            return Ok(Described::NoId);
        }
        let high = rd::rd_kafka_Uuid_most_significant_bits(uuid) as u64;
        let low = rd::rd_kafka_Uuid_least_significant_bits(uuid) as u64;
        let id = (u128::from(high) << 64) | u128::from(low);
        Ok(if id == 0 {
            Described::NoId
        } else {
            Described::Id(TopicId(id))
        })
    }
}

/// A librdkafka object and its destructor, called on drop unless the pointer is null.
struct Owned<T>(*mut T, unsafe extern "C" fn(*mut T));

impl<T> Owned<T> {
    fn new(pointer: *mut T, destroy: unsafe extern "C" fn(*mut T)) -> Owned<T> {
        Owned(pointer, destroy)
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from the librdkafka constructor paired with this
            // destructor and is destroyed only here.
            unsafe { (self.1)(self.0) }
        }
    }
}

/// A C string from librdkafka, as text.
///
/// # Safety
/// `pointer` is null or a NUL-terminated string that lives for the call.
unsafe fn text(pointer: *const c_char) -> String {
    if pointer.is_null() {
        return "unknown error".to_owned();
    }
    // SAFETY: as the caller promises.
    unsafe { CStr::from_ptr(pointer) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_as_written_and_zero_is_none() {
        let id = TopicId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(TopicId::parse(&id.to_string()), Some(id));
        assert_eq!(TopicId::parse(&"0".repeat(32)), None);
        assert_eq!(TopicId::parse("abc"), None);
        assert_eq!(TopicId::parse(&"g".repeat(32)), None);
    }
}
