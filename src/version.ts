// openproxy's version, from package.json (one place; the CLI, the console and the docs show it).

export const VERSION: string = require('../../package.json').version;
