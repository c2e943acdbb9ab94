// One linter for the project: typescript-eslint's recommended rules plus the layering of
// ../shared/STYLE.md (imports point down the folder list, never up) as no-restricted-imports.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const layer = (files, forbidden, message) => ({
  files,
  rules: {
    'no-restricted-imports': [
      'error',
      { patterns: forbidden.map((dir) => ({ group: [`**/${dir}/*`, `**/${dir}`], message })) },
    ],
  },
});

export default tseslint.config(
  { ignores: ['src/gen/**', 'dist/**', 'node_modules/**', '.shardgate/**'] },
  js.configs.recommended,
  {
    files: ['scripts/**/*.mjs'],
    languageOptions: { globals: { console: 'readonly', process: 'readonly' } },
  },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      'no-restricted-syntax': [
        'error',
        {
          selector: "MemberExpression[property.name='only'][object.name=/^(it|describe|test)$/]",
          message: 'no focused tests',
        },
        {
          selector: "MemberExpression[property.name='skip'][object.name=/^(it|describe|test)$/]",
          message: 'no skipped tests',
        },
      ],
    },
  },
  layer(
    ['src/core/**'],
    [
      'router',
      'catalog',
      'pg',
      'shards',
      'shared-db',
      'jobs',
      'api',
      'client',
      'cli',
      'embedded',
      'config',
      'auth',
      'gen',
    ],
    'src/core imports nothing internal',
  ),
  layer(
    ['src/router/**'],
    ['catalog', 'pg', 'shards', 'shared-db', 'jobs', 'api', 'client', 'cli', 'embedded', 'gen'],
    'src/router is pure: it may import core only',
  ),
  layer(
    ['src/pg/**'],
    ['router', 'catalog', 'shards', 'shared-db', 'jobs', 'api', 'client', 'cli', 'gen'],
    'src/pg is the Postgres plumbing: core only',
  ),
  layer(
    ['src/catalog/**', 'src/shards/**', 'src/shared-db/**'],
    ['router', 'jobs', 'api', 'auth', 'client', 'cli', 'gen'],
    'data layers import core and pg only',
  ),
  layer(['src/jobs/**'], ['api', 'client', 'cli', 'gen'], 'jobs must not depend on the API layer'),
  layer(
    ['src/client/**', 'src/cli/**'],
    [
      'router',
      'catalog',
      'pg',
      'shards',
      'shared-db',
      'jobs',
      'api',
      'auth',
      'rebalance',
      'embedded',
      'config',
      'gateway',
      'gateway.js',
    ],
    'the client and CLI speak gRPC only',
  ),
  layer(
    ['src/auth/**'],
    [
      'router',
      'shards',
      'shared-db',
      'jobs',
      'api',
      'rebalance',
      'client',
      'cli',
      'embedded',
      'gen',
    ],
    'src/auth (tokens, scopes, policy) imports core, pg and catalog only',
  ),
  layer(
    ['src/rebalance/**'],
    ['api', 'client', 'cli', 'gen'],
    'jobs must not depend on the API layer',
  ),
);
