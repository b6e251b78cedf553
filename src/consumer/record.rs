//! Copying a message out of librdkafka's buffer into a [`Record`], reading its bytes as hostile:
//! a header name that is not UTF-8 (legal on the wire) makes a `malformed` record instead of a
//! panic on the consumer thread.

use std::sync::Arc;

use bytes::Bytes;
use rdkafka::Timestamp;
use rdkafka::message::{BorrowedMessage, Headers, Message as _};

use crate::record::{Header, Record, TopicPartition};

/// Topic names already seen, so records share one allocation per topic.
#[derive(Default)]
pub struct TopicNames {
    /// Interned names.
    names: Vec<Arc<str>>,
    /// The last name handed out: records come in runs of one partition, so it is usually the
    /// one asked for next. It is compared by content: an address can be reused by another name.
    last: Option<Arc<str>>,
}

impl TopicNames {
    /// The shared name of `topic`.
    pub fn get(&mut self, topic: &str) -> Arc<str> {
        if let Some(name) = &self.last
            && **name == *topic
        {
            return name.clone();
        }
        let name = match self.names.iter().find(|n| &***n == topic) {
            Some(name) => name.clone(),
            None => {
                let name: Arc<str> = Arc::from(topic);
                self.names.push(name.clone());
                name
            }
        };
        self.last = Some(name.clone());
        name
    }
}

/// Copies a message out of librdkafka's buffer.
pub fn to_record(message: &BorrowedMessage<'_>, topics: &mut TopicNames) -> Record {
    let timestamp = match message.timestamp() {
        Timestamp::NotAvailable => None,
        Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => Some(ms),
    };
    let (headers, malformed) = message.headers().map(read_headers).unwrap_or_default();
    Record {
        tp: TopicPartition { topic: topics.get(message.topic()), partition: message.partition() },
        offset: message.offset(),
        timestamp,
        key: message.key().map(Bytes::copy_from_slice),
        value: message.payload().map(Bytes::copy_from_slice),
        headers,
        malformed,
        decoded: None,
        origin: crate::record::Origin::Kafka,
    }
}

/// The headers of a message, and what could not be read of them. rdkafka panics on a header
/// name that is not UTF-8 (any bytes are legal on the wire): such a header is left out and
/// named in the second value, which makes the record a `malformed` dead letter.
pub fn read_headers<H: Headers>(headers: &H) -> (Vec<Header>, Option<Box<str>>) {
    let copy = |h: rdkafka::message::Header<'_, &[u8]>| Header {
        name: h.key.to_string(),
        value: h.value.map(Bytes::copy_from_slice),
    };
    if let Ok(all) = crate::panics::quietly(|| headers.iter().map(copy).collect()) {
        return (all, None);
    }
    let mut readable = Vec::with_capacity(headers.count());
    let mut unreadable = Vec::new();
    for index in 0..headers.count() {
        match crate::panics::quietly(|| headers.try_get(index).map(copy)) {
            Ok(Some(header)) => readable.push(header),
            Ok(None) => {}
            Err(_) => unreadable.push(index.to_string()),
        }
    }
    let defect = format!(
        "the name of header {} (counting from 0) is not UTF-8: it cannot be read, so this dead letter lacks it; the original record is still in its topic",
        unreadable.join(", ")
    );
    (readable, Some(defect.into_boxed_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_at_a_reused_address_is_compared_by_content() {
        let mut names = TopicNames::default();
        let mut buffer = String::from("orders");
        assert_eq!(&*names.get(&buffer), "orders");
        // Same address, same length, other bytes: a freed name whose memory was reused.
        buffer.replace_range(.., "events");
        assert_eq!(&*names.get(&buffer), "events");
        assert_eq!(&*names.get("orders"), "orders");
        assert!(Arc::ptr_eq(&names.get("orders"), &names.get("orders")), "one allocation per name");
    }

    #[test]
    fn headers_with_a_name_that_is_not_utf8_are_reported_not_panicked_on() {
        // rdkafka's header API takes `&str` names, so an invalid name can only come from the wire;
        // the integration test produces one by hand. Here: readable headers pass untouched.
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header { key: "a", value: Some("1") })
            .insert(rdkafka::message::Header { key: "b", value: None::<&str> });
        let (read, defect) = read_headers(&headers);
        assert_eq!(defect, None);
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].value, None);
    }
}
