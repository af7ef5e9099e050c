"""The federation hub: signed node↔hub messages, access negotiation and (later) the job broker."""
