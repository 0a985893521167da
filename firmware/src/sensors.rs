//! Pure conversions from volts at an ADC pin to engineering values, with the
//! wiring faults each sensor can show. No I/O: the node reads volts through an
//! [`crate::hal::AnalogInput`] and converts here, so the same code serves the
//! MCU's ADC, an SPI converter and the simulation.

/// A sensor reading that cannot be trusted, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SensorFault {
    /// Open circuit: a broken wire or an unplugged sensor.
    Open,
    /// Short circuit.
    Short,
}

/// A 4–20 mA transducer (pressure, level) read across a shunt resistor.
///
/// NAMUR NE 43: below 3.6 mA or above 21 mA the loop is faulty, not a reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoopTransducer {
    /// Shunt resistance (typically 150 Ω for a 3.3 V ADC).
    pub shunt_ohms: f32,
    /// Engineering value at 4 mA.
    pub at_4ma: f32,
    /// Engineering value at 20 mA.
    pub at_20ma: f32,
}

impl LoopTransducer {
    /// Converts the shunt voltage.
    ///
    /// # Errors
    /// [`SensorFault`] when the loop current is outside 3.6–21 mA.
    pub fn convert(&self, volts: f32) -> Result<f32, SensorFault> {
        let ma = volts / self.shunt_ohms * 1000.0;
        if ma < 3.6 {
            return Err(SensorFault::Open);
        }
        if ma > 21.0 {
            return Err(SensorFault::Short);
        }
        let span = self.at_20ma - self.at_4ma;
        Ok(self.at_4ma + (ma.clamp(4.0, 20.0) - 4.0) / 16.0 * span)
    }
}

/// An NTC thermistor on the low side of a divider with a pull-up to `vref`
/// (socket and battery temperatures in a charging bay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ntc {
    /// Resistance at 25 °C (typically 10 kΩ).
    pub r25_ohms: f32,
    /// Beta constant (typically 3950 K).
    pub beta: f32,
    /// Pull-up resistance.
    pub pullup_ohms: f32,
    /// Divider supply voltage.
    pub vref: f32,
}

impl Ntc {
    /// Converts the divider voltage to °C with the Beta equation.
    ///
    /// # Errors
    /// [`SensorFault`] when the voltage sits at a rail.
    pub fn convert(&self, volts: f32) -> Result<f32, SensorFault> {
        if volts <= 0.01 * self.vref {
            return Err(SensorFault::Short);
        }
        if volts >= 0.99 * self.vref {
            return Err(SensorFault::Open);
        }
        let r = self.pullup_ohms * volts / (self.vref - volts);
        let inv_t = 1.0 / 298.15 + libm::logf(r / self.r25_ohms) / self.beta;
        Ok(1.0 / inv_t - 273.15)
    }
}

/// A current shunt behind an amplifier (per-port charging current).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shunt {
    /// Shunt resistance.
    pub ohms: f32,
    /// Amplifier gain.
    pub gain: f32,
}

impl Shunt {
    /// Converts the amplifier output to amperes (never negative: chargers only draw).
    #[must_use]
    pub fn convert(&self, volts: f32) -> f32 {
        (volts / self.gain / self.ohms).max(0.0)
    }
}

/// A resistive divider in front of the ADC (mains voltage through a transformer
/// and rectifier, scaled to RMS).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Divider {
    /// Volts at the measured point per volt at the pin.
    pub ratio: f32,
}

impl Divider {
    /// Converts the pin voltage.
    #[must_use]
    pub fn convert(&self, volts: f32) -> f32 {
        volts * self.ratio
    }
}
