//! What omen's agent and detector both speak, written once.
