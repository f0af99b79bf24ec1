// A config that cannot be used: the message names the key path, the bad value and what was expected.

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
