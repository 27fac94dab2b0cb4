//! The header scan of a typical SUBSCRIBE does not touch the heap: parsing it allocates only
//! the Request-URI text.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SUBSCRIBE: &[u8] = b"SUBSCRIBE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP watcherhost.example.com;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@example.com>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=xfg9\r\n\
Call-ID: 2010@watcherhost.example.com\r\n\
CSeq: 17766 SUBSCRIBE\r\n\
Event: presence\r\n\
Accept: application/pidf+xml, application/rlmi+xml, multipart/related\r\n\
Contact: <sip:alice@watcherhost.example.com;transport=tcp>;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"\r\n\
Supported: eventlist\r\n\
Allow-Events: presence, presence.winfo\r\n\
User-Agent: Watcher/1.0\r\n\
Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl\r\n\
Expires: 600\r\n\
Content-Length: 0\r\n\r\n";

#[test]
fn parsing_a_subscribe_allocates_only_the_request_uri() {
    let buf = Bytes::from_static(SUBSCRIBE);
    // Warm up anything lazily initialised.
    let _ = sip::parse(buf.clone()).unwrap();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let message = sip::parse(buf).unwrap();
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(after - before, 1, "one allocation: the Request-URI");
    assert_eq!(message.headers().len(), 15);
    // Untyped lookups borrow from the message and do not allocate either.
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(
        message.headers().get("call-id"),
        Some("2010@watcherhost.example.com")
    );
    assert_eq!(message.headers().get_all("Allow-Events").count(), 2);
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst), before);
}
