"""Everything that runs on the door controller: configuration, the daemon and its
wiring, the journal, the sync agent, the control socket, metrics, doctor, demo."""
