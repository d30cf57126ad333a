import { defineConfig } from 'prisma/config';

// Only `prisma generate` runs on our machines (Prisma's schema engine cannot be downloaded there);
// migrations are applied by the application itself (src/db/migrate.ts), so no datasource URL is
// needed here.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
});
