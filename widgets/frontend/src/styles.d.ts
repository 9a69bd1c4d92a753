// A widget module imports its stylesheets; esbuild writes them beside the bundle (dist/<name>.css).
declare module "*.css";
