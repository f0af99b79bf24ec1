// The layers of openproxy, lowest first. A module may import from its own layer and the layers
// below it, never from a layer above, and no import cycle is allowed (type-only imports count).
// `npm run check:deps` (part of `npm test`) enforces this; CONTRIBUTING.md explains the layers.
const LAYERS = [
  // config, shared state, logging and the version: below everything
  '^src/(config/|shared/|log\\.ts$|version\\.ts$)',
  // wire codecs and socket helpers
  '^src/(protocol|net)/',
  // server connections and pools
  '^src/pool/',
  // routing decisions and the HA thread's monitors
  '^src/(routing|ha)/',
  // a client connection
  '^src/session/',
  // the admin console and the metrics exporter
  '^src/(admin|metrics)/',
  // threads, listener, process entry, command line; thread entry points
  '^(src/(runtime/|main\\.ts$|cli\\.ts$)|workers/)',
];

const layerRules = LAYERS.slice(0, -1).map((from, i) => ({
  name: `layer-${i}-imports-upward`,
  comment: `${from} may not import from a layer above it (see LAYERS in .dependency-cruiser.cjs)`,
  severity: 'error',
  from: { path: from },
  to: { path: LAYERS.slice(i + 1) },
}));

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Import cycles make the layers meaningless and the load order fragile.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'product-imports-no-harness',
      comment: 'src/ and workers/ ship in the package; the test harness, tests and benchmarks do not.',
      severity: 'error',
      from: { path: '^(src|workers)/' },
      to: { path: '^(testing|test|benchmarks)/' },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true, pathNot: 'package\\.json$' },
    },
    ...layerRules,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^dist/' },
  },
};
