//! wordup-engine: the image engine. It knows nothing about Discord or Slack;
//! the `wordup-engine` binary wires delivery from wordup-bot into the worker.
