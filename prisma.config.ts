import { defineConfig } from 'prisma/config';

// Only `prisma generate` runs on our machines (see ../shared/STACK.md); migrations are applied by the
// application itself (src/db/migrate.ts), so no datasource URL is needed here.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
});
