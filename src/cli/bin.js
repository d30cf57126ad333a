#!/usr/bin/env node
// The `jobs-gateway` command: the build of src/cli/main.ts (`npm run build`, run at install).
await import('../../dist/cli/main.js');
