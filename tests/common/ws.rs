//! A WebSocket gateway client for the tests (tungstenite, blocking, 5 s read timeout).

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use oscgate::edge::frame::pb;
use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub struct Ws {
    pub sock: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    /// Connects to `ws://<http>/gateway<query>`.
    pub fn connect(http: SocketAddr, query: &str) -> Ws {
        let (mut sock, _) = tungstenite::connect(format!("ws://{http}/gateway{query}")).unwrap();
        if let MaybeTlsStream::Plain(s) = sock.get_mut() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        Ws { sock }
    }

    pub fn next(&mut self) -> Message {
        loop {
            match self.sock.read().expect("websocket read") {
                Message::Ping(_) | Message::Pong(_) => {}
                m => return m,
            }
        }
    }

    pub fn json(&mut self) -> Value {
        match self.next() {
            Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
            m => panic!("expected a text frame, got {m:?}"),
        }
    }

    pub fn binary(&mut self) -> Vec<u8> {
        match self.next() {
            Message::Binary(b) => b.to_vec(),
            m => panic!("expected a binary frame, got {m:?}"),
        }
    }

    pub fn envelope(&mut self) -> pb::envelope::Kind {
        let b = self.binary();
        <pb::Envelope as prost::Message>::decode(b.as_slice())
            .unwrap()
            .kind
            .unwrap()
    }

    pub fn send_json(&mut self, v: Value) {
        self.sock.send(Message::Text(v.to_string().into())).unwrap();
    }

    pub fn send_binary(&mut self, b: Vec<u8>) {
        self.sock.send(Message::Binary(b.into())).unwrap();
    }

    /// The error frame that refuses, then the close.
    pub fn refused(&mut self, code: &str) {
        let e = self.json();
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "{e}"
        );
        loop {
            match self.sock.read() {
                Ok(Message::Close(_)) | Err(_) => return,
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => {}
                Ok(m) => panic!("after a refusal: {m:?}"),
            }
        }
    }
}
