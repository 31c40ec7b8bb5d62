// The race check of the gpu kernel family (./check.ts).
import { raceCheck } from "./check.ts";

raceCheck("gpu");
