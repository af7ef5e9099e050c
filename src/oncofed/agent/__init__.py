"""The node's outbound agent: joins a hub, long-polls it for tasks and answers them."""
