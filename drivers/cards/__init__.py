"""Cards that prove themselves (issue 18): MIFARE DESFire EV2/EV3 with AES keys
diversified per card (AN10922), and PIV card authentication (SP 800-73 / SP 800-116
PKI-CAK). ``crypto`` holds the primitives the door and the simulated cards share;
``desfire`` and ``piv`` run the door's side of each protocol over a transmit function."""
