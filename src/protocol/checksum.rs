//! Checksums used by the BMS protocols, each in one place.

/// Sum of all bytes, wrapping at 8 bits (Daly, JK PB).
pub fn sum8(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

/// Sum of all bytes, wrapping at 16 bits (JK RS485).
pub fn sum16(bytes: &[u8]) -> u16 {
    bytes
        .iter()
        .fold(0u16, |acc, b| acc.wrapping_add(u16::from(*b)))
}

/// JBD's checksum: `0x10000 - sum(bytes)`, truncated to 16 bits (an empty payload gives 0).
pub fn jbd(bytes: &[u8]) -> u16 {
    0u16.wrapping_sub(sum16(bytes))
}

/// CRC-16/MODBUS: init 0xFFFF, reflected polynomial 0xA001, no final XOR.
/// Sent low byte first on the wire.
pub fn crc16_modbus(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in bytes {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jbd_checksum_of_the_basic_info_request() {
        // DD A5 03 00 FF FD 77: checksum over register and length.
        assert_eq!(jbd(&[0x03, 0x00]), 0xFFFD);
        assert_eq!(jbd(&[]), 0x0000);
    }

    #[test]
    fn crc16_modbus_of_the_up16s_pack_status_request() {
        // 01 78 10 00 10 A0 00 00 7F B2 (incumbent study 2.3): CRC sent low byte first.
        let crc = crc16_modbus(&[0x01, 0x78, 0x10, 0x00, 0x10, 0xA0, 0x00, 0x00]);
        assert_eq!(crc.to_le_bytes(), [0x7F, 0xB2]);
    }
}
