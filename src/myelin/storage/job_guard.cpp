#include "myelin/storage/job_guard.hpp"

#include <exception>

#include "myelin/core/log.hpp"

namespace myelin::storage {

Result<void> run_write_body(WriteJob& job, WriteTxn& txn, std::string_view backend) {
    if (!job.run) return {};
    try {
        return job.run(txn);
    } catch (const std::exception& e) {
        myelin::log::app()->error("{}: a write job threw: {}", backend, e.what());
    } catch (...) {
        myelin::log::app()->error("{}: a write job threw a non-standard exception", backend);
    }
    return errors::internal();
}

void deliver_write_result(WriteJob& job, const Result<void>& result, std::string_view backend) {
    if (!job.on_committed) return;
    try {
        job.on_committed(result);
    } catch (const std::exception& e) {
        myelin::log::app()->error("{}: a write job's on_committed threw: {}", backend, e.what());
    } catch (...) {
        myelin::log::app()->error("{}: a write job's on_committed threw", backend);
    }
}

void run_read_job(ReadJob& job, ReadTxn* txn, std::string_view backend) {
    if (!job) return;
    try {
        job(txn);
    } catch (const std::exception& e) {
        myelin::log::app()->error("{}: a read job threw: {}", backend, e.what());
    } catch (...) {
        myelin::log::app()->error("{}: a read job threw a non-standard exception", backend);
    }
}

}  // namespace myelin::storage
