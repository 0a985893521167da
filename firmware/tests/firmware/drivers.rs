//! Drivers against embedded-hal-mock transactions: the exact bus traffic.

use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinTx};
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I2cTx};
use embedded_hal_mock::eh1::spi::{Mock as SpiMock, Transaction as SpiTx};
use firmware::drivers::as5600::{self, As5600, SpeedEstimator};
use firmware::drivers::input::DebouncedInput;
use firmware::drivers::mcp3208::{self, Mcp3208};
use firmware::drivers::relay::Relay;
use firmware::hal::{AnalogInput, Millis};

#[test]
fn mcp3208_sends_the_datasheet_frame_and_scales_to_volts() {
    // Channel 5: start + single-ended + D2 = 0b111, D1D0 = 01 at the top of byte 1.
    let expectations = [
        SpiTx::transaction_start(),
        SpiTx::transfer_in_place(vec![0b0000_0111, 0b0100_0000, 0], vec![0xFF, 0xF8, 0x00]),
        SpiTx::transaction_end(),
    ];
    let mut spi = SpiMock::new(&expectations);
    let mut adc = Mcp3208::new(spi.clone(), 3.3);
    let v = adc.read_volts(5).unwrap();
    assert!((v - 2048.0 / 4096.0 * 3.3).abs() < 1e-6, "{v}");
    assert_eq!(adc.read_volts(8), Err(mcp3208::Error::NoSuchChannel(8)));
    spi.done();
}

#[test]
fn as5600_checks_the_magnet_then_reads_the_angle() {
    let expectations = [
        I2cTx::write_read(as5600::ADDRESS, vec![0x0B], vec![0x20]),
        I2cTx::write_read(as5600::ADDRESS, vec![0x0C], vec![0x0A, 0xBC]),
        I2cTx::write_read(as5600::ADDRESS, vec![0x0B], vec![0x00]),
    ];
    let mut i2c = I2cMock::new(&expectations);
    let mut s = As5600::new(i2c.clone());
    assert_eq!(s.raw_angle().unwrap(), 0x0ABC);
    assert_eq!(s.raw_angle(), Err(as5600::Error::NoMagnet));
    i2c.done();
}

#[test]
fn speed_estimator_handles_wrap_and_direction() {
    // 1 m per turn, 100 ms between samples.
    let mut e = SpeedEstimator::new(1.0, false);
    assert_eq!(e.update(4000, Millis(0)), None);
    // 4000 -> 96 crosses zero going up: +192 counts = 0.046875 m in 0.1 s.
    let v = e.update(96, Millis(100)).unwrap();
    assert!((v - 0.468_75).abs() < 1e-5, "{v}");
    let v = e.update(0, Millis(200)).unwrap();
    assert!(v < 0.0, "going back down: {v}");
    let mut inverted = SpeedEstimator::new(1.0, true);
    inverted.update(0, Millis(0));
    assert!(inverted.update(100, Millis(100)).unwrap() < 0.0);
    assert_eq!(inverted.update(100, Millis(100)), None, "no time passed");
}

#[test]
fn debounced_input_reads_through_the_pin() {
    let expectations = [PinTx::get(State::Low), PinTx::get(State::Low), PinTx::get(State::High)];
    let mut pin = PinMock::new(&expectations);
    // Active low: a closed contact pulls the pin down.
    let mut input = DebouncedInput::new(pin.clone(), true, 20);
    assert!(!input.sample(Millis(0)).unwrap());
    assert!(input.sample(Millis(20)).unwrap());
    assert!(input.sample(Millis(25)).unwrap(), "one high sample is a bounce");
    pin.done();
}

#[test]
fn relay_starts_off_and_only_writes_changes() {
    let expectations = [PinTx::set(State::Low), PinTx::set(State::High), PinTx::set(State::Low)];
    let mut pin = PinMock::new(&expectations);
    let mut relay = Relay::new(pin.clone(), true).unwrap();
    assert!(!relay.is_on());
    relay.set(true).unwrap();
    relay.set(true).unwrap(); // no second write
    relay.set(false).unwrap();
    pin.done();
}
