import { V8Engine } from '@ambit/runtime';
import { describeEngineConformance } from './conformance.js';

describeEngineConformance('v8', () => new V8Engine({ workers: 2, onLog: () => {} }));
