//! Hardware-in-the-loop in simulation: scenarios of faults on a simulated
//! compound ([`sim`]), run through the real firmware, real links and the real
//! gateway, with expectations checked against what the gateway did.
