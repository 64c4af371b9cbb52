use super::*;
use proptest::prelude::*;

type Events = Vec<Result<Vec<u8>, FrameError>>;

/// Feeds `chunks` in order; returns the callback events and the first returned error.
fn feed(dec: &mut Decoder, chunks: &[&[u8]]) -> (Events, Option<FrameError>) {
    let mut events = Vec::new();
    let mut fatal = None;
    for chunk in chunks {
        let mut chunk = chunk.to_vec();
        if let Err(e) = dec.decode(&mut chunk, |ev| events.push(ev.map(<[u8]>::to_vec))) {
            fatal.get_or_insert(e);
        }
    }
    (events, fatal)
}

fn frames(events: &Events) -> Vec<Vec<u8>> {
    events.iter().filter_map(|e| e.clone().ok()).collect()
}

const MSG: &[u8] = b"/a\0\0,i\0\0\0\0\0\x07";

#[test]
fn framing_names_parse_display_and_deserialize() {
    for (f, name) in [
        (Framing::Len32, "len32"),
        (Framing::Slip, "slip"),
        (Framing::Auto, "auto"),
    ] {
        assert_eq!(f.to_string(), name);
        assert_eq!(name.parse::<Framing>(), Ok(f));
        assert_eq!(name.to_uppercase().parse::<Framing>(), Ok(f));
        #[derive(serde::Deserialize)]
        struct Conf {
            framing: Framing,
        }
        let conf: Conf = toml::from_str(&format!("framing = \"{name}\"")).unwrap();
        assert_eq!(conf.framing, f);
    }
    assert_eq!("slip1".parse::<Framing>(), Err(UnknownFraming));
    assert!(toml::from_str::<toml::Table>("framing = \"SLIP\"")
        .unwrap()
        .get("framing")
        .unwrap()
        .clone()
        .try_into::<Framing>()
        .is_err());
}

#[test]
fn len32_known_vector() {
    let mut out = vec![0xAA];
    encode_len32(MSG, &mut out).unwrap();
    let mut expected = vec![0xAA, 0, 0, 0, 12];
    expected.extend_from_slice(MSG);
    assert_eq!(out, expected);
    assert_eq!(len32_header(12), Some([0, 0, 0, 12]));
    assert_eq!(len32_header(0x0102_0304), Some([1, 2, 3, 4]));
    assert_eq!(
        len32_header(LEN32_MAX_PACKET),
        Some([0x7F, 0xFF, 0xFF, 0xFF])
    );
    assert_eq!(len32_header(LEN32_MAX_PACKET + 1), None);
    assert_eq!(encoded_len(Framing::Len32, MSG), 16);
    assert_eq!(encoded_len(Framing::Auto, MSG), 16);

    let mut auto = Vec::new();
    encode(Framing::Auto, MSG, &mut auto).unwrap();
    assert_eq!(auto, out[1..]);

    let mut dec = Decoder::new(Framing::Len32, DEFAULT_MAX_FRAME);
    let (events, fatal) = feed(&mut dec, &[&out[1..]]);
    assert_eq!(events, vec![Ok(MSG.to_vec())]);
    assert_eq!(fatal, None);
}

#[test]
fn slip_known_vector() {
    let packet = [0x01, 0xC0, 0xDB, 0x02, 0xDC, 0xDD];
    let mut out = Vec::new();
    encode_slip(&packet, &mut out);
    assert_eq!(
        out,
        [0xC0, 0x01, 0xDB, 0xDC, 0xDB, 0xDD, 0x02, 0xDC, 0xDD, 0xC0]
    );
    assert_eq!(encoded_len(Framing::Slip, &packet), out.len());
    let mut plain = Vec::new();
    encode(Framing::Slip, MSG, &mut plain).unwrap();
    assert_eq!(plain.len(), MSG.len() + 2);
    assert_eq!(encoded_len(Framing::Slip, MSG), plain.len());
    assert_eq!(encoded_len(Framing::Slip, &[]), 2);

    let mut dec = Decoder::new(Framing::Slip, DEFAULT_MAX_FRAME);
    let (events, fatal) = feed(&mut dec, &[&out, &plain]);
    assert_eq!(events, vec![Ok(packet.to_vec()), Ok(MSG.to_vec())]);
    assert_eq!(fatal, None);
}

#[test]
fn slip_accepts_end_only_at_the_end() {
    let mut dec = Decoder::new(Framing::Slip, DEFAULT_MAX_FRAME);
    let (events, _) = feed(&mut dec, &[b"ab\xC0cd\xC0"]);
    assert_eq!(events, vec![Ok(b"ab".to_vec()), Ok(b"cd".to_vec())]);
}

#[test]
fn frames_inside_a_chunk_are_slices_of_it() {
    for framing in [Framing::Len32, Framing::Slip] {
        let mut stream = Vec::new();
        encode(framing, MSG, &mut stream).unwrap();
        encode(framing, b"\xC0\xDB escapes", &mut stream).unwrap();
        let mut dec = Decoder::new(framing, DEFAULT_MAX_FRAME);
        let mut seen = Vec::new();
        dec.decode(&mut stream, |ev| {
            let frame = ev.unwrap();
            seen.push((frame.as_ptr() as usize, frame.to_vec()));
        })
        .unwrap();
        let range = stream.as_ptr_range();
        assert_eq!(seen.len(), 2);
        for (ptr, frame) in &seen {
            let start = *ptr as *const u8;
            assert!(range.contains(&start), "{framing}: frame was copied");
            assert!(start.wrapping_add(frame.len()) <= range.end);
        }
        assert_eq!(seen[1].1, b"\xC0\xDB escapes");
        assert_eq!(dec.buffered(), 0);
        assert_eq!(
            dec.buffer_capacity(),
            0,
            "{framing}: buffer used for whole frames"
        );
    }
}

#[test]
fn straddling_frames_are_buffered_then_delivered() {
    for framing in [Framing::Len32, Framing::Slip] {
        let mut stream = Vec::new();
        encode(framing, MSG, &mut stream).unwrap();
        let mut dec = Decoder::new(framing, DEFAULT_MAX_FRAME);
        let (events, _) = feed(&mut dec, &[&stream[..7]]);
        assert!(events.is_empty());
        assert_eq!(
            dec.buffered(),
            if framing == Framing::Len32 { 3 } else { 6 }
        );
        let (events, _) = feed(&mut dec, &[&stream[7..]]);
        assert_eq!(events, vec![Ok(MSG.to_vec())]);
        assert_eq!(dec.buffered(), 0);
    }
}

#[test]
fn len32_prefix_split_over_one_byte_chunks() {
    let mut stream = Vec::new();
    encode_len32(MSG, &mut stream).unwrap();
    encode_len32(b"xy", &mut stream).unwrap();
    let pieces: Vec<&[u8]> = stream.chunks(1).collect();
    let mut dec = Decoder::new(Framing::Len32, DEFAULT_MAX_FRAME);
    let (events, fatal) = feed(&mut dec, &pieces);
    assert_eq!(events, vec![Ok(MSG.to_vec()), Ok(b"xy".to_vec())]);
    assert_eq!(fatal, None);
    assert_eq!(dec.position(), stream.len() as u64);
}

#[test]
fn giant_len32_prefix_is_fatal_and_sticky() {
    let mut stream = Vec::new();
    encode_len32(MSG, &mut stream).unwrap();
    stream.extend_from_slice(&[0x7F, 0xFF, 0xFF, 0xFF]);
    stream.extend_from_slice(&[0x55; 100]);
    for chunking in [stream.len(), 1, 5] {
        let pieces: Vec<&[u8]> = stream.chunks(chunking).collect();
        let mut dec = Decoder::new(Framing::Len32, DEFAULT_MAX_FRAME);
        let (events, fatal) = feed(&mut dec, &pieces);
        let expected = FrameError::Len32TooLong {
            declared: 0x7FFF_FFFF,
            max: DEFAULT_MAX_FRAME,
            offset: 16,
        };
        assert_eq!(events, vec![Ok(MSG.to_vec())], "chunks of {chunking}");
        assert_eq!(fatal, Some(expected));
        assert!(expected.is_fatal());
        assert_eq!(dec.failure(), Some(expected));
        assert_eq!(dec.buffered(), 0);
        assert_eq!(dec.buffer_capacity(), 0);
        // Still failed, and says so, even given a valid frame.
        let mut good = Vec::new();
        encode_len32(MSG, &mut good).unwrap();
        let mut delivered = 0;
        assert_eq!(dec.decode(&mut good, |_| delivered += 1), Err(expected));
        assert_eq!(delivered, 0);
    }
}

#[test]
fn just_over_max_and_negative_prefixes_are_fatal() {
    let mut dec = Decoder::new(Framing::Len32, 16);
    let (events, fatal) = feed(
        &mut dec,
        &[&[0, 0, 0, 16], &[7; 16], &[0, 0, 0, 17], &[7; 17]],
    );
    assert_eq!(events, vec![Ok(vec![7; 16])]);
    assert_eq!(
        fatal,
        Some(FrameError::Len32TooLong {
            declared: 17,
            max: 16,
            offset: 20
        })
    );
    let mut dec = Decoder::new(Framing::Len32, DEFAULT_MAX_FRAME);
    let (_, fatal) = feed(&mut dec, &[&[0xFF, 0xFF], &[0xFF, 0xFE]]);
    let expected = FrameError::Len32Negative {
        declared: -2,
        offset: 0,
    };
    assert_eq!(fatal, Some(expected));
    assert!(expected.to_string().contains("negative (-2)"));
    for (prefix, declared) in [([0xFF; 4], -1), ([0x80, 0, 0, 0], i32::MIN)] {
        let mut dec = Decoder::new(Framing::Len32, DEFAULT_MAX_FRAME);
        let (events, fatal) = feed(&mut dec, &[&[0, 0, 0, 1, 9], &prefix, &[1, 2, 3]]);
        assert_eq!(events, vec![Ok(vec![9])]);
        assert_eq!(
            fatal,
            Some(FrameError::Len32Negative {
                declared,
                offset: 5
            })
        );
    }
}

#[test]
fn endless_slip_frame_is_dropped_and_decoding_resumes() {
    let max = 1000;
    let mut dec = Decoder::new(Framing::Slip, max);
    let mut events = Vec::new();
    let mut first = vec![SLIP_END];
    first.extend_from_slice(&[0x41; 99]);
    for i in 0..200 {
        let mut chunk = if i == 0 {
            first.clone()
        } else {
            vec![0x41; 100]
        };
        // An escape now and then, so the slow path overflows too.
        chunk[50] = SLIP_ESC;
        chunk[51] = SLIP_ESC_END;
        dec.decode(&mut chunk, |ev| events.push(ev.map(<[u8]>::to_vec)))
            .unwrap();
        assert!(dec.buffered() <= max);
        assert!(dec.buffer_capacity() <= max);
    }
    assert_eq!(
        events,
        vec![Err(FrameError::SlipTooLong { max, offset: 1 })],
        "reported exactly once"
    );
    assert_eq!(dec.buffered(), 0);
    let mut tail = vec![SLIP_END];
    encode_slip(MSG, &mut tail);
    events.clear();
    dec.decode(&mut tail, |ev| events.push(ev.map(<[u8]>::to_vec)))
        .unwrap();
    assert_eq!(events, vec![Ok(MSG.to_vec())]);
}

#[test]
fn slip_frame_over_max_inside_one_chunk() {
    let mut stream = Vec::new();
    encode_slip(&[1; 9], &mut stream);
    encode_slip(&[2; 8], &mut stream);
    encode_slip(&[SLIP_END; 5], &mut stream); // 10 encoded bytes, 5 decoded
    encode_slip(&[SLIP_ESC; 9], &mut stream);
    let mut dec = Decoder::new(Framing::Slip, 8);
    let (events, fatal) = feed(&mut dec, &[&stream]);
    assert_eq!(fatal, None);
    assert_eq!(
        events,
        vec![
            Err(FrameError::SlipTooLong { max: 8, offset: 1 }),
            Ok(vec![2; 8]),
            Ok(vec![SLIP_END; 5]),
            Err(FrameError::SlipTooLong { max: 8, offset: 34 }),
        ]
    );
}

#[test]
fn bad_slip_escape_drops_the_frame_only() {
    // ESC 'A' in the middle of a frame: dropped up to the next END.
    let stream = b"\xC0ab\xDBAcd\xDB\xDCef\xC0\xC0ok\xC0";
    let mut dec = Decoder::new(Framing::Slip, DEFAULT_MAX_FRAME);
    let (events, fatal) = feed(&mut dec, &[stream]);
    assert_eq!(fatal, None);
    assert_eq!(
        events,
        vec![
            Err(FrameError::SlipBadEscape {
                byte: b'A',
                offset: 4
            }),
            Ok(b"ok".to_vec()),
        ]
    );
    // ESC END: that END still ends the frame, so the very next frame survives.
    let stream = b"\xC0ab\xDB\xC0ok\xC0";
    for split in 0..=stream.len() {
        let mut dec = Decoder::new(Framing::Slip, DEFAULT_MAX_FRAME);
        let (events, _) = feed(&mut dec, &[&stream[..split], &stream[split..]]);
        assert_eq!(
            events,
            vec![
                Err(FrameError::SlipBadEscape {
                    byte: SLIP_END,
                    offset: 4
                }),
                Ok(b"ok".to_vec()),
            ],
            "split at {split}"
        );
    }
    // ESC at the end of one chunk, the bad byte at the start of the next.
    let mut dec = Decoder::new(Framing::Slip, DEFAULT_MAX_FRAME);
    let (events, _) = feed(&mut dec, &[b"\xC0ab\xDB", b"\x00cd\xC0xy\xC0"]);
    assert_eq!(
        events,
        vec![
            Err(FrameError::SlipBadEscape { byte: 0, offset: 4 }),
            Ok(b"xy".to_vec())
        ]
    );
    assert!(!events[0].clone().unwrap_err().is_fatal());
}

#[test]
fn slip_escape_split_across_chunks() {
    let mut dec = Decoder::new(Framing::Slip, DEFAULT_MAX_FRAME);
    let (events, _) = feed(&mut dec, &[b"\xC0\xDB", b"\xDC", b"\xDB", b"\xDDz\xC0"]);
    assert_eq!(events, vec![Ok(b"\xC0\xDBz".to_vec())]);
}

#[test]
fn auto_detects_slip_and_len32_from_one_byte() {
    let mut slip = Vec::new();
    encode_slip(MSG, &mut slip);
    let mut len32 = Vec::new();
    encode_len32(MSG, &mut len32).unwrap();
    encode_len32(&[SLIP_END; 3], &mut len32).unwrap();
    for (stream, framing, n) in [(&slip, Framing::Slip, 1), (&len32, Framing::Len32, 2)] {
        let mut dec = Decoder::new(Framing::Auto, DEFAULT_MAX_FRAME);
        assert_eq!(dec.framing(), Framing::Auto);
        let (events, _) = feed(&mut dec, &[&[]]);
        assert!(events.is_empty());
        assert_eq!(
            dec.framing(),
            Framing::Auto,
            "an empty chunk decides nothing"
        );
        let (events, _) = feed(&mut dec, &[&stream[..1]]);
        assert!(events.is_empty());
        assert_eq!(dec.framing(), framing);
        let (events, fatal) = feed(&mut dec, &[&stream[1..]]);
        assert_eq!(fatal, None);
        assert_eq!(frames(&events).len(), n);
        assert_eq!(frames(&events)[0], MSG);
        assert_eq!(dec.framing(), framing, "the decision sticks");
    }
}

#[test]
fn auto_decision_sticks_for_later_bytes() {
    // A len32 stream whose second frame starts with 0xC0 bytes stays len32, and a SLIP
    // stream is never reinterpreted as len32.
    let mut dec = Decoder::new(Framing::Auto, DEFAULT_MAX_FRAME);
    let (events, fatal) = feed(&mut dec, &[&[0, 0, 0, 1, 9], &[0xC0, 0, 0, 0]]);
    assert_eq!(events, vec![Ok(vec![9])]);
    assert!(matches!(fatal, Some(FrameError::Len32Negative { .. })));
    let mut dec = Decoder::new(Framing::Auto, DEFAULT_MAX_FRAME);
    let (events, _) = feed(&mut dec, &[b"\xC0", b"\0\0\0\x01\xC0"]);
    assert_eq!(events, vec![Ok(vec![0, 0, 0, 1])]);
    assert_eq!(dec.framing(), Framing::Slip);
}

#[test]
fn empty_frames_are_skipped() {
    let mut dec = Decoder::new(Framing::Len32, DEFAULT_MAX_FRAME);
    let (events, fatal) = feed(&mut dec, &[&[0, 0, 0, 0, 0, 0, 0, 1, 5, 0, 0], &[0, 0]]);
    assert_eq!(events, vec![Ok(vec![5])]);
    assert_eq!(fatal, None);
    assert_eq!(dec.buffered(), 0);
    let mut dec = Decoder::new(Framing::Slip, DEFAULT_MAX_FRAME);
    let (events, _) = feed(&mut dec, &[b"\xC0\xC0\xC0a\xC0\xC0", b"\xC0", b"b\xC0"]);
    assert_eq!(events, vec![Ok(b"a".to_vec()), Ok(b"b".to_vec())]);
}

#[test]
fn large_straddling_frame_buffer_is_released() {
    let big = vec![3u8; RETAIN_CAPACITY * 2];
    for framing in [Framing::Len32, Framing::Slip] {
        let mut stream = Vec::new();
        encode(framing, &big, &mut stream).unwrap();
        let mut dec = Decoder::new(framing, DEFAULT_MAX_FRAME);
        let pieces: Vec<&[u8]> = stream.chunks(1500).collect();
        let (events, _) = feed(&mut dec, &pieces);
        assert_eq!(frames(&events), vec![big.clone()]);
        assert_eq!(dec.buffer_capacity(), 0, "{framing}");
    }
}

#[test]
fn error_display_says_what_and_where() {
    let e = FrameError::Len32TooLong {
        declared: 5_000_000,
        max: 1_048_576,
        offset: 12,
    };
    let s = e.to_string();
    assert!(
        s.contains("5000000") && s.contains("1048576") && s.contains("byte 12"),
        "{s}"
    );
    assert_eq!(e.offset(), 12);
    let e = FrameError::SlipBadEscape {
        byte: 0x41,
        offset: 7,
    };
    assert!(e.to_string().contains("0x41 at byte 7"));
    assert!(!e.is_fatal());
    let e = FrameError::SlipTooLong { max: 8, offset: 3 };
    assert!(e.to_string().contains("byte 3") && !e.is_fatal());
    assert!(PacketTooLong { len: 1 << 31 }
        .to_string()
        .contains("2147483648"));
}

#[test]
fn reserve_bounded_never_exceeds_the_limit() {
    let mut buf = Vec::new();
    for _ in 0..10 {
        reserve_bounded(&mut buf, 100, 1000);
        buf.extend_from_slice(&[0; 100]);
        assert!(buf.capacity() <= 1000, "{}", buf.capacity());
    }
    assert_eq!(buf.len(), 1000);
}

#[test]
fn fuzz_check_seeds() {
    let mut slip = vec![1, 0, 2];
    for p in [&b"\xC0\xDB"[..], MSG, b"", b"x"] {
        encode_slip(p, &mut slip);
    }
    slip.extend_from_slice(b"\xDBQ\xC0tail");
    let mut len32 = vec![0, 0x88, 3];
    for p in [MSG, &[0xC0; 40][..], b""] {
        encode_len32(p, &mut len32).unwrap();
    }
    len32.extend_from_slice(&[0, 0, 1]);
    for data in [
        &[][..],
        &[2],
        &[2, 4, 0, 0xC0, 1, 2, 3, 4, 5, 0xC0],
        &[0, 1, 1, 0, 0, 0, 2, 1, 1],
        &slip,
        &len32,
    ] {
        fuzz_check(data);
    }
}

fn packet() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        3 => any::<u8>(),
        1 => Just(SLIP_END),
        1 => Just(SLIP_ESC),
        1 => Just(SLIP_ESC_END),
    ];
    prop::collection::vec(byte, 1..300)
}

proptest! {
    #[test]
    fn round_trips_under_any_chunking(
        framing in prop_oneof![Just(Framing::Len32), Just(Framing::Slip), Just(Framing::Auto)],
        packets in prop::collection::vec(packet(), 0..20),
        mut cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let mut stream = Vec::new();
        for p in &packets {
            encode(framing, p, &mut stream).unwrap();
            prop_assert!(encoded_len(framing, p) <= stream.len());
        }
        prop_assert_eq!(
            stream.len(),
            packets.iter().map(|p| encoded_len(framing, p)).sum::<usize>()
        );
        let mut points: Vec<usize> = cuts.drain(..).map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let pieces: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
        let mut dec = Decoder::new(framing, 300);
        let (events, fatal) = feed(&mut dec, &pieces);
        prop_assert_eq!(fatal, None);
        let expected: Events = packets.iter().cloned().map(Ok).collect();
        prop_assert_eq!(events, expected);
        prop_assert_eq!(dec.buffered(), 0);
        prop_assert_eq!(dec.position(), stream.len() as u64);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(
        framing in prop_oneof![Just(Framing::Len32), Just(Framing::Slip), Just(Framing::Auto)],
        max in 0usize..40,
        data in prop::collection::vec(
            prop_oneof![4 => any::<u8>(), 1 => Just(SLIP_END), 1 => Just(SLIP_ESC), 2 => Just(0u8)],
            0..400,
        ),
        sizes in prop::collection::vec(0usize..20, 0..50),
    ) {
        let mut dec = Decoder::new(framing, max);
        let mut rest = &data[..];
        for n in sizes.into_iter().chain([usize::MAX]) {
            let (piece, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            let mut piece = piece.to_vec();
            let _ = dec.decode(&mut piece, |ev| {
                if let Ok(f) = ev {
                    assert!(!f.is_empty() && f.len() <= max);
                }
            });
            prop_assert!(dec.buffered() <= max.max(3));
        }
    }

    #[test]
    fn fuzz_check_holds_on_arbitrary_input(
        data in prop::collection::vec(
            prop_oneof![4 => any::<u8>(), 1 => Just(SLIP_END), 1 => Just(SLIP_ESC), 2 => Just(0u8)],
            0..600,
        ),
    ) {
        fuzz_check(&data);
    }
}
