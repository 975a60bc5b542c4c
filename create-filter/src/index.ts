/** `@ambit/create-filter` as a library: the scaffolder behind `npm create @ambit/filter`. */
export { scaffold, isTemplate, TEMPLATES, ScaffoldError, type ScaffoldOptions, type Scaffolded, type TemplateName } from './scaffold.js';
