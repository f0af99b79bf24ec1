// Every driver through transaction pooling: routing off and on, prepared cache 0 and 1000 (see
// helpers/driver-matrix.ts).
import { driverMatrix } from './helpers/driver-matrix';

driverMatrix('transaction');
